"""Bad inputs, fuzzed: override strings (keys, typos, values of every type, Hydra syntax) and data-file lines
(arbitrary bytes, JSON of the wrong shape, missing fields) -> one clear error line (a ConfigError) or a valid config,
never a traceback or another exception. A sample of the fuzzed command lines also runs as a real CLI (exit 2, one
line). The fixed cases of issue 8 are counted with the attack files (tests/test_bad_inputs.py)."""
from __future__ import annotations

import functools
import json
import os
import random
import sys
from concurrent.futures import ThreadPoolExecutor

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from experiments import validate_hydra
from experiments.factory import load_task
from experiments.validate import config_problems, data_problems, one_line
from runs_cli import run_cli
from tasks.gsm8k import DATA_DIR as GSM8K_DIR
from textgrad_core.errors import ConfigError

FULL = os.environ.get("RELIABILITY") == "full" or "--reliability-full" in sys.argv
OVERRIDE_EXAMPLES = 150 if FULL else 6
DATA_EXAMPLES = 200 if FULL else 25
CLI_SAMPLES = 10 if FULL else 1
COUNTS: dict[str, dict[str, int]] = {}


def _count(group: str, outcome: str) -> None:
    COUNTS.setdefault(group, {"tried": 0, "refused": 0, "accepted": 0, "tracebacks": 0})
    COUNTS[group]["tried"] += 1
    COUNTS[group][outcome] += 1


def _flat(cfg, prefix=""):
    for key, value in cfg.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            yield from _flat(value, path + ".")
        else:
            yield path


_OPEN: list[validate_hydra.Session] = []
_KEYS: list[str] = []


@pytest.fixture(scope="module", autouse=True)
def hydra_session():
    """One Hydra session for every example of this module, closed after it (GlobalHydra must not leak out)."""
    with validate_hydra.Session() as session:
        _OPEN.append(session)
        try:
            yield session
        finally:
            _OPEN.clear()
            _KEYS.clear()


def _session() -> validate_hydra.Session:
    assert _OPEN, "the module's Hydra session is not open"
    return _OPEN[0]


def _keys() -> list[str]:
    if not _KEYS:
        plain, _ = _session().compose([])
        _KEYS.extend(sorted(k for k in _flat(plain) if not k.startswith(("hydra", "pricing"))))
    return _KEYS


def check_command_line(argv: list[str]) -> str | None:
    """What preflight does for one job, in a shared Hydra session: None when valid, else the one error line."""
    try:
        plan = validate_hydra.plan(argv, multirun=False)
        if plan is None:
            return None
        session = _session()
        for job in session.jobs(plan):
            plain, absent = session.compose(job, plan)
            problems = config_problems(plain)
            if not problems and absent:
                problems = [validate_hydra.absent_key(absent[0])]
            problems = problems or data_problems(plain)
            if problems:
                raise ConfigError(one_line(problems))
    except ConfigError as exc:
        message = str(exc)
        assert message and "\n" not in message and "Traceback" not in message, message
        return message
    return None


def _typo(key: str, i: int) -> str:
    i %= len(key)
    return key[:i] + key[i + 1:]


values = st.one_of(
    st.integers(-10**12, 10**12).map(str), st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.sampled_from(["true", "false", "null", "''", "[]", "{}", "[1,", "{a:", "${oc.env:HOME}", "${nope}", "-", "0x1f",
                     "1e309", "nan", "-inf", "'\\''", "\\", "a=b=c", "🙂"]),
    st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=30))
overrides = st.builds(
    lambda prefix, key, typo, at, value: f"{prefix}{_typo(key, at) if typo else key}={value}",
    st.sampled_from(["", "+", "++", "~"]), st.deferred(lambda: st.sampled_from(_keys())), st.booleans(),
    st.integers(0, 40), values)
groups = st.builds(lambda g, v: f"{g}={v}", st.sampled_from(["task", "credit", "optimizer", "engine", "search",
                                                             "experiment"]),
                   st.text(alphabet="abcdefghijklmnopqrstuvwxyz_0123456789/.-", min_size=0, max_size=14))
FUZZ = settings(max_examples=OVERRIDE_EXAMPLES, deadline=None, database=None, derandomize=True,
                suppress_health_check=list(HealthCheck))


@FUZZ
@given(st.lists(st.one_of(overrides, groups), min_size=1, max_size=3))
def test_fuzzed_command_lines_get_one_clear_line_or_pass(argv):
    try:
        error = check_command_line(argv)
    except Exception:
        _count("fuzzed command lines (in process)", "tracebacks")
        raise
    _count("fuzzed command lines (in process)", "refused" if error else "accepted")


# --------------------------------------------------------------------------- data files

@functools.lru_cache(maxsize=1)
def _good_lines() -> tuple[list[str], list[str]]:
    train = (GSM8K_DIR / "train.jsonl").read_text(encoding="utf-8").splitlines()[:12]
    test = (GSM8K_DIR / "test.jsonl").read_text(encoding="utf-8").splitlines()[:4]
    return train, test


json_values = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=10),
                           lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
                           max_leaves=8)
bad_lines = st.one_of(
    st.binary(max_size=60),
    json_values.map(lambda v: json.dumps(v).encode()),
    st.fixed_dictionaries({"question": json_values, "answer": json_values}).map(lambda v: json.dumps(v).encode()),
    st.fixed_dictionaries({"question": st.text(max_size=40), "answer": st.text(max_size=40)}).map(
        lambda v: json.dumps(v).encode()),
    st.sampled_from([b"", b"   ", b"\xef\xbb\xbf{}", b"\xff\xfe", b'{"question": "q"', b"[" * 500, b"\x00" * 10]))
DATA_FUZZ = settings(max_examples=DATA_EXAMPLES, deadline=None, database=None, derandomize=True,
                     suppress_health_check=list(HealthCheck))


@DATA_FUZZ
@given(st.lists(st.tuples(st.integers(0, 11), bad_lines), min_size=1, max_size=3), st.booleans())
def test_fuzzed_data_lines_get_one_clear_line_naming_the_file_or_load(tmp_path_factory, inserts, in_test):
    train, test = _good_lines()
    lines = [line.encode() for line in (test if in_test else train)]
    for at, line in inserts:
        lines.insert(min(at, len(lines)), line)
    directory = tmp_path_factory.mktemp("gsm8k")
    good = test if not in_test else train
    (directory / ("test.jsonl" if in_test else "train.jsonl")).write_bytes(b"\n".join(lines) + b"\n")
    (directory / ("train.jsonl" if in_test else "test.jsonl")).write_text("\n".join(good) + "\n", encoding="utf-8")
    try:
        load_task({"name": "gsm8k", "data_dir": str(directory), "n_train": 4, "n_val": 4}).checked_splits()
    except ConfigError as exc:
        message = str(exc)
        assert "\n" not in message and ("train.jsonl" in message or "test.jsonl" in message), message
        _count("fuzzed data-file lines (gsm8k loader)", "refused")
        return
    except Exception:
        _count("fuzzed data-file lines (gsm8k loader)", "tracebacks")
        raise
    _count("fuzzed data-file lines (gsm8k loader)", "accepted")


def test_a_deeply_nested_data_line_is_one_clear_error(tmp_path, figures):
    train, test = _good_lines()
    (tmp_path / "train.jsonl").write_text("\n".join(train[:5] + ["[" * 5000] + train[5:]) + "\n", encoding="utf-8")
    (tmp_path / "test.jsonl").write_text("\n".join(test) + "\n", encoding="utf-8")
    try:
        with pytest.raises(ConfigError, match="train.jsonl line 6"):
            load_task({"name": "gsm8k", "data_dir": str(tmp_path), "n_train": 4, "n_val": 4}).checked_splits()
    except RecursionError:
        figures.add("inputs", "known_gaps", "textgrad_core/task.py read_jsonl: a data line nested 5000 deep raises "
                                            "RecursionError instead of a DataError naming the file and line")
        raise


def test_a_sample_of_bad_command_lines_fails_cleanly_on_the_real_cli(tmp_path):
    rng = random.Random(11)
    keys = _keys()
    samples = []
    while len(samples) < CLI_SAMPLES:
        argv = [f"{rng.choice(['', '+'])}{_typo(rng.choice(keys), rng.randrange(40))}="
                f"{rng.choice(['-7', 'abc', '1e309', '[1,', 'null', '${nope}', ''])}"]
        if check_command_line(argv):  # a bad one (the in-process check says so)
            samples.append(argv)

    def run(i_argv):
        i, argv = i_argv
        proc = run_cli(tmp_path / f"c{i}", *argv, timeout=120)
        return argv, proc

    with ThreadPoolExecutor(max_workers=2) as pool:
        results = list(pool.map(run, enumerate(samples)))
    for argv, proc in results:
        lines = proc.stderr.strip().splitlines()
        clean = proc.returncode == 2 and len(lines) == 1 and lines[0].startswith("error: ") and \
            "Traceback" not in proc.stderr + proc.stdout
        _count("bad command lines (real CLI, exit 2)", "refused" if clean else "tracebacks")
        assert clean, (argv, proc.returncode, proc.stderr[-1500:])
        assert not list((tmp_path / f"c{results.index((argv, proc))}").rglob("run.json"))  # no run directory


def test_zz_record_the_inputs_tried(figures):
    assert COUNTS, "the fuzz tests above did not run"
    for name, counts in sorted(COUNTS.items()):
        figures.add("inputs", "groups", {"name": name, **counts})
    assert all(c["tracebacks"] == 0 for c in COUNTS.values()), COUNTS
