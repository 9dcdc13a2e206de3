"""The figures of the reliability suite: collected by the tests, saved as JSON, rendered into docs/reliability.md.

    python tests/reliability/figures.py [figures.json] [docs/reliability.md]

Every number in the document comes from the JSON the suite wrote; nothing here is typed in by hand.
"""
from __future__ import annotations

import json
import sys
import threading
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
FIGURES_PATH = ROOT / ".cache" / "reliability" / "figures.json"
DOC_PATH = ROOT / "docs" / "reliability.md"


class Figures:
    """What the suite measured, by section (faults, kills, secrets, inputs, attacks, isolation)."""

    def __init__(self) -> None:
        self.data: dict[str, Any] = {}
        self._lock = threading.Lock()

    def add(self, section: str, key: str, item: Any) -> None:
        """Append one measured item (a run, a kill, a scan) to a section's list `key`."""
        with self._lock:
            self.data.setdefault(section, {}).setdefault(key, []).append(item)

    def set(self, section: str, key: str, value: Any) -> None:
        """Set one figure of a section."""
        with self._lock:
            self.data.setdefault(section, {})[key] = value

    def save(self, path: Path) -> None:
        """Write the figures as JSON (sorted keys, so reruns diff cleanly)."""
        path.parent.mkdir(parents=True, exist_ok=True)
        with self._lock:
            path.write_text(json.dumps(self.data, indent=2, sort_keys=True, default=str) + "\n", encoding="utf-8")


# --------------------------------------------------------------------------- rendering


def _table(header: list[str], rows: list[list[Any]]) -> list[str]:
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    out += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return out + [""]


def _sum(items: list[dict], key: str) -> int:
    return sum(int(i.get(key) or 0) for i in items)


def _faults(f: dict) -> list[str]:
    runs = f.get("runs", [])
    if not runs:
        return ["_The fault matrix did not run._", ""]
    kinds = sorted({k for r in runs for k in r["faults"]})
    out = [f"{len(runs)} whole runs over HTTP against the fault-injecting local server "
           f"(`tests/provider_server.py`), each under a seeded mix of every fault type below, with a hostile "
           f"optimizer model (`tests/reliability/hostile.py`) that breaks the `<NEW_VALUE>` delimiters or the joint "
           f"JSON in a share of its replies.", ""]
    rows = [[r["task"], r["credit"], r["optimizer"], r["status"], *[r["faults"].get(k, 0) for k in kinds],
             r["calls_logged"], r["failed_calls"], r["versions"]] for r in runs]
    out += _table(["task", "credit", "optimizer", "status", *kinds, "calls logged", "failed calls", "versions"], rows)
    totals = {k: sum(r["faults"].get(k, 0) for r in runs) for k in kinds}
    out += [f"Faults met: {sum(totals.values())} (" + ", ".join(f"{k} {v}" for k, v in totals.items()) + ").", ""]
    out += _table(["what must be 0", "count"], [
        ["crashed runs (status other than completed, or an exception)", _sum(runs, "crashed")],
        ["corrupted parameters (a value no optimizer reply proposed)", _sum(runs, "corrupted")],
        ["lost log records (answered calls missing from calls.jsonl)", _sum(runs, "lost")],
        ["unexplained failures (a fault or failed call without its event, a hostile reply without re-ask or event)",
         _sum(runs, "unexplained")]])
    return out


def _kills(k: dict) -> list[str]:
    kills = k.get("kills", [])
    if not kills:
        return ["_No kill ran._", ""]
    by_moment: dict[str, list[dict]] = {}
    for item in kills:
        by_moment.setdefault(item["moment"], []).append(item)
    out = [f"{len(kills)} runs SIGKILLed at seeded moments and resumed with `resume=<run dir>`; each result compared "
           f"with an uninterrupted run of the same config (status, scores, every parameter version, every metric "
           f"record).", ""]
    count = lambda v, pred: sum(1 for i in v if pred(i))  # noqa: E731
    rows = [[m, len(v), count(v, lambda i: i["killed"]), count(v, lambda i: i["landed"] in ("mid-write", "mid-line")),
             count(v, lambda i: i["killed"] and i.get("checkpoint")), count(v, lambda i: i["resumed"]),
             count(v, lambda i: i["identical"]), _sum(v, "repaid"),
             count(v, lambda i: i["killed"] and not i.get("checkpoint") and i.get("refused_cleanly"))]
            for m, v in sorted(by_moment.items())]
    out += _table(["moment of the kill", "runs", "killed", "inside a file write", "after the first checkpoint",
                   "resumed", "identical to uninterrupted", "re-paid calls", "before it: resume refused in one line"], rows)
    resumable = [i for i in kills if i["killed"] and i.get("checkpoint")]
    out += [f"Kills survived: {count(resumable, lambda i: i['identical'])} of {len(resumable)} resumable kills ended "
            f"identical to the uninterrupted run; re-paid calls: {_sum(kills, 'repaid')}.", ""]
    return out


def _attacks(a: dict) -> list[str]:
    classes = a.get("classes", {})
    if not classes:
        return ["_The attack tests were not collected._", ""]
    out = ["Counted by running the attack test files and collecting each test's result (JUnit XML), per class:", ""]
    rows = [[name, c["tests"], c["held"], c["failed"], c["skipped"], ", ".join(c["files"])]
            for name, c in sorted(classes.items())]
    out += _table(["attack class", "tests", "held", "failed", "skipped", "from"], rows)
    missing = a.get("missing_files", [])
    if missing:
        out += ["Not present in this checkout (counted as 0 tests): " + ", ".join(missing) + ".", ""]
    return out


def _inputs(i: dict) -> list[str]:
    groups = i.get("groups", [])
    if not groups:
        return ["_No bad input was tried._", ""]
    out = ["Each bad input must end in one clear error line (a `ConfigError`, exit 2 on the command line) or a "
           "logged safe repair — never a traceback or another exception.", ""]
    rows = [[g["name"], g["tried"], g["refused"], g["accepted"], g["tracebacks"]] for g in groups]
    out += _table(["inputs", "tried", "one clear error", "accepted (valid or repaired)", "tracebacks / other errors"], rows)
    out += [f"Inputs tried: {_sum(groups, 'tried')}; tracebacks: {_sum(groups, 'tracebacks')}.", ""]
    if i.get("known_gaps"):
        out += ["Open holes (a strict xfail test each, passing the day it is fixed; the fuzzers above keep nesting "
                "shallower than this):", "", *[f"- {g}" for g in sorted(set(i["known_gaps"]))], ""]
    return out


def _secrets(s: dict) -> list[str]:
    scans = s.get("scans", [])
    if not scans:
        return ["_No secret scan ran._", ""]
    shapes = sorted({shape for sc in scans for shape in sc["shapes"]})
    out = [f"Keys of {len(shapes)} shapes ({', '.join(shapes)}) planted in the environment of real runs (the engines "
           "use them against the local server, which also echoes them back in replies and error messages); every "
           "6-character window of every key is searched for in every file the runs left (run directories, the "
           "request cache), in stdout/stderr, and in exception texts.", ""]
    rows = [[sc["name"], ", ".join(sc["shapes"]), sc["files"], sc["bytes"], sc["texts"], sc["leaks"]] for sc in scans]
    out += _table(["scan", "key shapes", "files", "bytes", "other texts", "fragments found"], rows)
    out += [f"Secrets scanned: {_sum(scans, 'files')} files, {_sum(scans, 'bytes')} bytes; fragments found: "
            f"{_sum(scans, 'leaks')}.", ""]
    gaps = sorted({g for found in s.get("known_gaps", []) for g in found})
    if gaps:
        out += ["Open holes found by these scans (the scan test fails on any other leak and is marked xfail while "
                "only these remain; each needs a fix outside `tests/`):", "", *[f"- {g}" for g in gaps], ""]
    return out


def _isolation(i: dict) -> list[str]:
    if "call_logs" not in i:
        return ["_The isolation scan did not run._", ""]
    return [f"Every call log the suite produced, scanned after the other tests: {i['call_logs']} call logs, "
            f"{i['calls']} calls, {i['guarded_calls']} of them forward/credit/optimizer/validation calls outside the "
            f"test split, checked against the test inputs of each run's task ({i['test_inputs']} in all): "
            f"{i['leaks']} test inputs found. (Control: {i.get('test_calls_with_inputs', 0)} test-split calls, where "
            f"test inputs belong, were found to hold one, so the scan does see them.)", ""]


def render(data: dict[str, Any]) -> str:
    """docs/reliability.md from the figures."""
    session = data.get("session", {})
    out = ["# Reliability and security: what the suite measured", "",
           "This file is generated: `make reliability` runs the whole suite in `tests/reliability/` "
           "(`pytest tests/reliability --reliability-full`), which writes its figures to "
           "`.cache/reliability/figures.json`, and `tests/reliability/figures.py` renders them here. Do not edit it "
           "by hand; rerun `make reliability`. A fast slice of the same tests runs in every `make test`.", "",
           f"Suite result: {session.get('passed', 0)} passed, {session.get('failed', 0)} failed, "
           f"{session.get('error', 0)} errors, {session.get('skipped', 0)} skipped, {session.get('xfailed', 0)} xfailed "
           f"(known holes, listed below; mode: {data.get('mode', '?')}).", "",
           "## Faults survived", "", *_faults(data.get("faults", {})),
           "## Kills survived", "", *_kills(data.get("kills", {})),
           "## Attacks held", "", *_attacks(data.get("attacks", {})),
           "## Inputs tried", "", *_inputs(data.get("inputs", {})),
           "## Secrets scanned", "", *_secrets(data.get("secrets", {})),
           "## Test-split isolation", "", *_isolation(data.get("isolation", {}))]
    return "\n".join(out).rstrip() + "\n"


def main(argv: list[str]) -> int:
    """Render the figures JSON (default .cache/reliability/figures.json) into docs/reliability.md."""
    src = Path(argv[0]) if argv else FIGURES_PATH
    dst = Path(argv[1]) if len(argv) > 1 else DOC_PATH
    if not src.exists():
        print(f"error: {src} does not exist; run `make reliability` to measure the figures", file=sys.stderr)
        return 2
    dst.write_text(render(json.loads(src.read_text(encoding="utf-8"))), encoding="utf-8")
    print(f"wrote {dst}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
