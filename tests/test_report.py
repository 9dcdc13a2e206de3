"""`python -m experiments.report`: tables per task and method, Student t intervals, plots; numbers equal the run files."""
import json
import math
import os
import statistics
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hydra import compose, initialize_config_dir
from rich.console import Console

from experiments.extras import install_extra
from experiments.report import main as report_main
from experiments.report import print_summary, write_report
from experiments.run import run_experiment

ROOT = Path(__file__).resolve().parents[1]
METHODS = ["backprop", "outcome"]
SEEDS = [0, 1]


def make_run(run_dir: Path, *overrides: str) -> dict:
    """A real simulator run, in-process, written to run_dir."""
    with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base="1.3"):
        cfg = compose("config", overrides=["trainer.max_steps=2", "trainer.val_size=20", "trainer.test_size=20",
                                           "trainer.progress=false", f"run_dir={run_dir}", *overrides])
    return run_experiment(cfg)


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    """A sweep-like directory: 2 credit strategies x 2 seeds, one run directory each."""
    root = tmp_path_factory.mktemp("sweep")
    job = 0
    for credit in METHODS:
        for seed in SEEDS:
            make_run(root / f"{job:03d}_bbh_object_counting_{credit}_tgd", f"credit={credit}", f"trainer.seed={seed}")
            job += 1
    return root


@pytest.fixture(scope="module")
def report(sweep, tmp_path_factory):
    reason = install_extra("report")
    if reason:
        pytest.skip(reason)
    out = tmp_path_factory.mktemp("report")
    assert report_main([str(sweep), "--out", str(out)]) == 0
    return out


def summaries(sweep: Path, credit: str) -> list[dict]:
    return [json.loads((d / "summary.json").read_text()) for d in sorted(sweep.iterdir()) if f"_{credit}_" in d.name]


def test_one_row_per_method_with_student_t_interval_equal_to_the_run_files(sweep, report):
    data = json.loads((report / "report.json").read_text())
    rows = data["tasks"]["bbh_object_counting"]
    assert [r["method"]["credit"] for r in rows] == METHODS and all(r["n"] == len(SEEDS) for r in rows)
    md = (report / "report.md").read_text()
    assert "95% Student t" in md
    for row in rows:
        runs = summaries(sweep, row["method"]["credit"])
        for split in ("val", "test"):
            values = [s[split]["final"] for s in runs]
            mean, hw = statistics.fmean(values), 12.706 * statistics.stdev(values) / math.sqrt(2)  # t_{0.975,1}
            assert row[f"{split}_final"]["mean"] == pytest.approx(mean)
            assert row[f"{split}_final"]["half_width"] == pytest.approx(hw)
        line = next(l for l in md.splitlines() if l.startswith(f"| {row['label']} |"))
        cells = [c.strip() for c in line.strip("|").split("|")]
        vals = [s["val"]["final"] for s in runs]
        assert cells[5] == f"{statistics.fmean(vals):.3f} ± {12.706 * statistics.stdev(vals) / math.sqrt(2):.3f}"
        assert cells[2] == "2" and cells[3] == "2 completed"
        assert "SIMULATION" in cells[1]  # simulated rows say so in the table itself
        # total calls of the row: mean over seeds of each run's usage.calls
        assert float(cells[8]) == pytest.approx(statistics.fmean(s["usage"]["calls"] for s in runs))
        for phase in ("forward", "credit", "optimizer", "validation", "test"):
            pline = next(l for l in md.splitlines() if l.startswith(f"| {row['label']} | {phase} |"))
            calls = float(pline.strip("|").split("|")[2])
            assert calls == pytest.approx(statistics.fmean(s["phases"][phase]["calls"] for s in runs))


def test_plots_are_real_pngs_with_content(report):
    from PIL import Image
    for name in ("bbh_object_counting_val_by_step.png", "bbh_object_counting_cost_quality.png"):
        img = Image.open(report / name).convert("L")
        assert img.size[0] > 300
        assert float(np.asarray(img).std()) > 5, name  # not a blank canvas
        assert f"]({name})" in (report / "report.md").read_text()


def test_one_html_page_per_run(sweep, report):
    pages = sorted((report / "runs").glob("*.html"))
    assert [p.stem for p in pages] == sorted(d.name for d in sweep.iterdir())
    html = pages[0].read_text()
    assert "SIMULATION" in html and "http://" not in html.replace('xmlns="http://www.w3.org/2000/svg"', "")


def test_unpriced_cost_is_never_shown_as_zero_dollars(sweep, tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    src = sorted(sweep.iterdir())[0]
    for f in src.iterdir():
        (run / f.name).write_bytes(f.read_bytes())
    summary = json.loads((run / "summary.json").read_text())
    summary["usage"]["unpriced_models"] = ["mystery-model"]
    (run / "summary.json").write_text(json.dumps(summary))
    write_report([run], tmp_path / "out", plots=False)
    md = (tmp_path / "out" / "report.md").read_text()
    assert "unpriced (mystery-model)" in md and "$0.000" not in md
    console = Console(record=True, width=140)
    print_summary(summary, console=console)
    text = console.export_text()
    assert "SIMULATION" in text and "unpriced" in text and "0.000 " not in text.split("cost by phase")[1].split("run directory")[0].replace("0.000 │", "")


def test_a_path_that_is_no_run_exits_2_with_one_line(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    for path in (tmp_path, tmp_path / "missing"):
        proc = subprocess.run([sys.executable, "-m", "experiments.report", str(path)], cwd=tmp_path, env=env,
                              capture_output=True, text=True, timeout=120)
        assert proc.returncode == 2, proc.stderr
        assert len(proc.stderr.strip().splitlines()) == 1 and proc.stderr.startswith("error: ")
        assert "Traceback" not in proc.stderr
    assert list(tmp_path.iterdir()) == []  # nothing half-written


def test_cli_on_one_run_directory(sweep, tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    run = sorted(sweep.iterdir())[0]
    proc = subprocess.run([sys.executable, "-m", "experiments.report", str(run), "--out", str(tmp_path), "--no-plots"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    summary = json.loads((run / "summary.json").read_text())
    md = (tmp_path / "report.md").read_text()
    row = next(l for l in md.splitlines() if l.startswith("| credit=backprop"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[4:8] == [f"{summary['val']['initial']:.3f}", f"{summary['val']['final']:.3f}",
                          f"{summary['test']['initial']:.3f}", f"{summary['test']['final']:.3f}"]
    assert str(tmp_path / "report.md") in proc.stdout


def test_per_phase_numbers_equal_the_call_log(sweep, tmp_path):
    run = sorted(sweep.iterdir())[0]
    write_report([run], tmp_path, plots=False)
    (row,) = json.loads((tmp_path / "report.json").read_text())["tasks"]["bbh_object_counting"]
    calls = [json.loads(l) for l in (run / "calls.jsonl").read_text().splitlines()]
    for phase in ("forward", "credit", "optimizer", "validation", "test"):
        paid = [c for c in calls if c.get("phase") == phase and not c.get("cache_hit")]
        assert row["phases"][phase]["calls"] == len(paid), phase
        assert row["phases"][phase]["input_tokens"] == sum(c["usage"]["input_tokens"] for c in calls if c.get("phase") == phase)
        assert row["phases"][phase]["output_tokens"] == sum(c["usage"]["output_tokens"] for c in calls if c.get("phase") == phase)
        assert row["phases"][phase]["cost_usd"] == pytest.approx(sum(c["cost_usd"] for c in calls if c.get("phase") == phase))
