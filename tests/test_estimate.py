"""experiments.estimate: the dry run makes the simulated run's calls, and its cost range brackets a hand count."""
import json
import subprocess
import sys
from pathlib import Path

import bpe_openai
import pytest

from experiments.estimate import compose, estimate
from experiments.estimate_tokens import TokenCounter, encoding_name
from experiments.run import run_experiment

ROOT = Path(__file__).resolve().parents[1]
TINY = ["trainer.max_steps=2", "trainer.val_size=4", "trainer.test_size=4"]


def test_call_count_equals_the_simulated_run_of_the_same_config(tmp_path):
    overrides = ["experiment=repro/textgrad_object_counting", *TINY]
    est = estimate(overrides, workdir=tmp_path / "estimate")
    # The same config run on the simulator the ordinary way (engine=sim; the per-role models stay as configured).
    plain = compose([*overrides, "engine=sim", "trainer.progress=false", f"run_dir={tmp_path / 'sim_run'}"])
    plain.pop("target")
    summary = run_experiment(plain)
    assert summary["status"] == "completed" and est.status == "completed"
    assert est.total.calls == summary["usage"]["calls"] > 0
    assert {p: c.calls for p, c in est.by_phase.items()} == {p: v["calls"] for p, v in summary["phases"].items()}
    assert sum(c.calls for c in est.by_role.values()) == est.total.calls
    assert est.steps == summary["steps"] == 2


def test_cost_range_brackets_a_hand_computed_figure(tmp_path):
    # No step: one validation and one test call of gpt-3.5-turbo-0125 ($0.50 in / $1.50 out per million tokens).
    est = estimate(["experiment=repro/textgrad_object_counting", "trainer.max_steps=0", "trainer.val_size=1",
                    "trainer.test_size=1"], workdir=tmp_path)
    records = [json.loads(l) for l in (tmp_path / "run" / "calls.jsonl").read_text().splitlines()]
    assert len(records) == est.total.calls == 2
    enc = bpe_openai.get_encoding("cl100k_base")
    low = high = realistic = 0.0
    for r in records:
        prompt = sum(len(enc.encode(m["content"])) + 3 for m in r["messages"]) + 3  # OpenAI's chat framing
        reply = len(enc.encode(r["reply"]))
        low += (prompt * 0.50 + reply * 1.50) / 1e6
        high += (prompt * 0.50 + 1024 * 1.50) / 1e6                # the forward op's max_tokens
        realistic += (prompt * 0.50 + 200 * 1.50) / 1e6           # a 200-token chain of thought
    assert est.total.cost_low_usd == pytest.approx(low)
    assert est.total.cost_high_usd == pytest.approx(high)
    assert est.total.cost_low_usd < realistic < est.total.cost_high_usd
    assert est.tokenizers == {"gpt-3.5-turbo-0125": "cl100k_base", "gpt-4o": "o200k_base"}


def test_models_without_an_offline_tokenizer_are_counted_as_chars_over_4():
    assert encoding_name("gpt-4o-mini") == "o200k_base" and encoding_name("gpt-3.5-turbo-0125") == "cl100k_base"
    counter = TokenCounter("claude-haiku-4-5")
    assert counter.method == "characters/4" and not counter.exact
    assert counter.messages([{"role": "user", "content": "x" * 9}]) == 3


def test_an_unpriced_model_is_reported_not_priced_at_zero(tmp_path):
    est = estimate(["experiment=repro/textgrad_object_counting", "engine.model=my-local-model", "trainer.max_steps=0",
                    "trainer.val_size=1", "trainer.test_size=1"], workdir=tmp_path)
    assert est.total.unpriced_calls == est.total.calls == 2 and est.total.cost_high_usd == 0


def test_cli_prints_the_table_and_a_bad_override_is_one_line(tmp_path):
    ok = subprocess.run([sys.executable, "-m", "experiments.estimate", "experiment=repro/textgrad_object_counting",
                         "trainer.max_steps=0", "trainer.val_size=1", "trainer.test_size=1"],
                        cwd=tmp_path, capture_output=True, text=True, env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin"})
    assert ok.returncode == 0, ok.stderr
    assert "by phase" in ok.stdout and "validation" in ok.stdout and "cl100k_base" in ok.stdout
    assert not list(tmp_path.iterdir())  # the dry run leaves nothing behind
    bad = subprocess.run([sys.executable, "-m", "experiments.estimate", "experiment=repro/no_such_file"],
                         cwd=tmp_path, capture_output=True, text=True, env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin"})
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
    assert len(bad.stderr.strip().splitlines()) == 1 and bad.stderr.startswith("error:")
