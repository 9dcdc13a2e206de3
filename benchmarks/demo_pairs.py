"""The simulator rows of docs/credit.md: the default experiment once per credit x optimizer pair.

`python -m benchmarks.demo_pairs` prints the Markdown table. SIMULATION: the simulator is a plumbing device; the
table shows that every pair runs and what it calls, not how strategies compare on a real model.
"""
from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

from hydra import compose, initialize_config_dir

from experiments.run import run_experiment

CONFIGS = str(Path(__file__).resolve().parents[1] / "configs")
PAIRS = [("backprop", "tgd"), ("semantic", "tgd"), ("trace", "tgd"), ("trace", "joint"), ("outcome", "tgd"),
         ("outcome", "opro"), ("adaptive", "tgd"), ("adaptive", "joint")]


def row(credit: str, optimizer: str, root: Path) -> str:
    run_dir = root / f"{credit}_{optimizer}"
    with initialize_config_dir(config_dir=CONFIGS, version_base="1.3"):
        cfg = compose(config_name="config", overrides=[f"credit={credit}", f"optimizer={optimizer}",
                                                        "trainer.progress=false", f"run_dir={run_dir}"])
    s = run_experiment(cfg)
    calls = [json.loads(line) for line in (run_dir / "calls.jsonl").read_text().splitlines()]
    per = {p: sum(1 for c in calls if c["phase"] == p) for p in ("credit", "optimizer", "forward", "validation")}
    return (f"| {credit} | {optimizer} | {s['val']['initial']:.2f} → {s['val']['final']:.2f} | "
            f"{s['test']['initial']:.2f} → {s['test']['final']:.2f} | {per['credit']} | {per['optimizer']} | "
            f"{per['forward']} | {per['validation']} |")


def main() -> int:
    print("| credit | optimizer | validation | test | credit calls | optimizer calls | forward calls | validation calls |")
    print("|---|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        for credit, optimizer in PAIRS:
            print(row(credit, optimizer, Path(tmp)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
