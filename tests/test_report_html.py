"""The per-run HTML page in headless Chromium: it renders (not blank) and its DOM holds the graph, parameters, curve."""
import json
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from hydra import compose, initialize_config_dir

from experiments.html_report import write_run_page
from experiments.report_data import RunRecord
from experiments.run import run_experiment
from textgrad_core.graph import Graph
from textgrad_core.variable import OpRecord, Parameter, Variable

ROOT = Path(__file__).resolve().parents[1]


def _install_chromium() -> str | None:
    """Debian's chromium via apt-get when missing (root only); the reason when that is impossible."""
    if shutil.which("chromium"):
        return None
    if not shutil.which("apt-get") or os.geteuid() != 0:
        return "chromium is not installed and apt-get is unavailable or not root"
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for cmd in (["apt-get", "update", "-q"], ["apt-get", "install", "-y", "-q", "chromium"]):
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900, env=env)
        except subprocess.TimeoutExpired:
            return f"{' '.join(cmd)} timed out"
        if proc.returncode != 0:
            return f"{' '.join(cmd)} failed: {(proc.stderr or proc.stdout).strip().splitlines()[-1:]}"
    return None if shutil.which("chromium") else "chromium still missing after apt-get install"


@pytest.fixture(scope="session")
def chromium():
    reason = _install_chromium()
    if reason:
        pytest.skip(f"headless Chromium unavailable: {reason}")
    return shutil.which("chromium")


def headless(chromium: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                           "--no-first-run", "--hide-scrollbars", *args], capture_output=True, text=True, timeout=120)


def example_graph(instruction: str) -> dict:
    """A recorded graph shaped like the object-counting system: instruction + question -> llm -> answer -> loss."""
    param = Parameter(value=instruction, role="system prompt of the counting LLM", name="instruction")
    question = Variable(value="I have a piano and two flutes. How many instruments?", role="question")
    answer = Variable(value="Answer: 3", role="answer", op=OpRecord(
        name="counting_llm", kind="llm", inputs=[("system", param), ("user", question)]))
    loss = Variable(value="correct", role="loss: exact match", op=OpRecord(
        name="exact_match", kind="loss", inputs=[("answer", answer)]))
    loss.score = 1.0
    return Graph.from_output(loss).to_json()


@pytest.fixture(scope="module")
def page(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("run") / "r"
    with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base="1.3"):
        cfg = compose("config", overrides=["trainer.max_steps=3", "trainer.val_size=20", "trainer.test_size=20",
                                           "trainer.progress=false", f"run_dir={run_dir}"])
    summary = run_experiment(cfg)
    if not (run_dir / "graphs.jsonl").exists():  # until the trainer records graphs, record one the same way
        graph = example_graph(json.loads((run_dir / "parameters.jsonl").read_text().splitlines()[0])["value"])
        (run_dir / "graphs.jsonl").write_text(json.dumps({"step": 1, "example_id": "ex-0", "graph": graph}) + "\n")
    return write_run_page(RunRecord.load(run_dir), run_dir.parent / "html"), run_dir, summary


def test_screenshot_is_not_blank(chromium, page, tmp_path):
    from PIL import Image
    html, _, _ = page
    shot = tmp_path / "shot.png"
    proc = headless(chromium, f"--screenshot={shot}", "--window-size=1200,1600", html.as_uri())
    assert shot.exists(), proc.stderr[-2000:]
    pixels = np.asarray(Image.open(shot).convert("L"))
    assert float(pixels.std()) > 10  # text, boxes and curve, not an empty canvas


def test_dom_holds_graph_every_parameter_and_the_curve(chromium, page):
    html, run_dir, summary = page
    proc = headless(chromium, "--dump-dom", html.as_uri())
    dom = proc.stdout
    assert 'id="graph-svg"' in dom, proc.stderr[-2000:]
    graph = json.loads((run_dir / "graphs.jsonl").read_text().splitlines()[0])["graph"]
    for node in graph["nodes"]:
        assert f'data-id="{node["id"]}"' in dom
    assert 'data-kind="param"' in dom and 'data-kind="loss"' in dom and 'class="edge"' in dom
    for pid in summary["parameters"]:
        assert f'id="param-{pid}"' in dom
    metrics = [json.loads(l) for l in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert dom.count('class="point"') == len(metrics)
    for m in metrics:
        assert f'data-step="{m["step"]}" data-val="{m["val_score"]}"' in dom
    assert "SIMULATION" in dom and 'id="phases"' in dom
    versions = [json.loads(l) for l in (run_dir / "parameters.jsonl").read_text().splitlines()]
    assert dom.count('class="version') == len(versions)  # every version of every parameter, with its diff


def test_page_is_self_contained(page):
    html, _, _ = page
    text = html.read_text()
    for needle in ("<script src", "<link", "https://", "@import", "url(http"):
        assert needle not in text
