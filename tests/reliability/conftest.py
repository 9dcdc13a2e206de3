"""The reliability suite: a fast slice in every `pytest` run, the whole suite with `--reliability-full` (or
RELIABILITY=full), which `make reliability` uses and which also writes the figures JSON for docs/reliability.md."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from reliability.figures import FIGURES_PATH, Figures

FULL_OPTION = "--reliability-full"
FULL_MARK = "reliability_full"
_figures = Figures()


def pytest_addoption(parser: pytest.Parser) -> None:
    # Registered only when pytest is pointed at tests/reliability (an initial conftest); elsewhere RELIABILITY=full.
    parser.addoption(FULL_OPTION, action="store_true", default=False,
                     help="run the whole reliability suite (not only its fast slice) and write its figures JSON")


def full_mode(config: pytest.Config) -> bool:
    """True when the whole suite was asked for, by option or by RELIABILITY=full."""
    return bool(config.getoption(FULL_OPTION, default=False)) or os.environ.get("RELIABILITY", "") == "full"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", f"{FULL_MARK}: part of the whole reliability suite only (not the fast slice)")
    config.addinivalue_line("markers", "reliability_last: runs after every other test (it scans what they produced)")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # The fast slice leaves the full-only cases out (deselected, not skipped: `make test` stays quiet), and the
    # isolation scan goes last so that it sees every call log the other tests produced.
    if not full_mode(config):
        kept = [i for i in items if not (_is_ours(i) and i.get_closest_marker(FULL_MARK))]
        dropped = [i for i in items if i not in kept]
        if dropped:
            config.hook.pytest_deselected(items=dropped)
            items[:] = kept
    items.sort(key=lambda i: _is_ours(i) and i.get_closest_marker("reliability_last") is not None)


def _is_ours(item: pytest.Item) -> bool:
    return Path(__file__).parent in Path(str(item.fspath)).parents


@pytest.fixture(scope="session")
def full(request: pytest.FixtureRequest) -> bool:
    """Whether this session runs the whole suite."""
    return full_mode(request.config)


@pytest.fixture(scope="session")
def figures(full: bool) -> Figures:
    """The session's figures: each test adds what it measured; written as JSON at the end of a full session."""
    _figures.data["mode"] = "full" if full else "fast"
    return _figures


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if not full_mode(session.config) or not _figures.data.get("mode"):
        return
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    stats = {k: len(v) for k, v in (reporter.stats.items() if reporter else []) if k in ("passed", "failed", "error", "skipped", "xfailed")}
    _figures.data["session"] = {"exitstatus": int(exitstatus), **stats}
    _figures.save(Path(os.environ.get("RELIABILITY_FIGURES", FIGURES_PATH)))
