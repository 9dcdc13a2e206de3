"""List runs at a glance: `python -m experiments.ls [runs root or sweep dir ...]` — one line per run with its status."""
from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

COLUMNS = ("status", "run", "task", "credit", "optimizer", "steps", "val", "test", "cost")


def runs_under(root: Path) -> list[Path]:
    """Every run directory under `root` (it holds run.json), oldest first by name."""
    return sorted((p.parent for p in root.rglob("run.json")), key=lambda p: str(p))


def row(run: Path) -> dict[str, str]:
    """The headline of one run; a run without a summary is `running` (or was killed: see its checkpoint)."""
    try:
        summary: dict[str, Any] = json.loads((run / "summary.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        step = "?"
        try:
            step = str(json.loads((run / "checkpoint.json").read_text(encoding="utf-8"))["step"])
        except (OSError, ValueError, KeyError):
            pass
        return {"status": "running/killed", "run": str(run), "task": "", "credit": "", "optimizer": "",
                "steps": step, "val": "", "test": "", "cost": ""}
    usage = summary.get("usage") or {}
    cost = "unpriced" if usage.get("unpriced_models") else f"${usage.get('cost_usd', 0):.4f}"
    sim = " (SIMULATION)" if summary.get("simulated") else ""

    def pair(split: str) -> str:
        s = summary.get(split) or {}
        return "-" if s.get("final") is None else f"{s.get('initial')}->{s.get('final')}"

    return {"status": summary.get("status", "?") + sim, "run": str(run), "task": str(summary.get("task", "")),
            "credit": str(summary.get("credit", "")), "optimizer": str(summary.get("optimizer", "")),
            "steps": str(summary.get("steps", "")), "val": pair("val"), "test": pair("test"), "cost": cost}


def main(argv: list[str]) -> int:
    roots = [Path(a) for a in argv] or [Path("runs")]
    missing = [r for r in roots if not r.is_dir()]
    if missing:
        print(f"error: {missing[0]} is not a directory; give a runs root or a sweep directory", file=sys.stderr)
        return 2
    rows = [row(r) for root in roots for r in runs_under(root)]
    if not rows:
        print(f"no runs under {', '.join(map(str, roots))}")
        return 0
    widths = {c: max(len(c), *(len(r[c]) for r in rows)) for c in COLUMNS}
    print("  ".join(c.ljust(widths[c]) for c in COLUMNS))
    for r in rows:
        print("  ".join(r[c].ljust(widths[c]) for c in COLUMNS))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
