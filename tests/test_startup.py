"""Start-up: what a process imports before it reports a config error or sends its first request (issue 12).

Every check is on modules and the order of events, in a fresh subprocess; none on wall-clock time.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks.mock_server import MockServer, ServerSettings
from experiments.cli_preflight import group_choice_problem

ROOT = Path(__file__).resolve().parents[1]
# What a config error needs none of: Hydra and its config library, the SDKs, pydantic, the graph library, engines.
HEAVY = ("hydra", "omegaconf", "openai", "anthropic", "httpx2", "pydantic", "networkx", "textgrad_core.engines",
         "textgrad_core.trainer", "tasks.registry", "experiments.factory")


def _python(code: str, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code, *args], cwd=ROOT, capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})})


def _loaded(modules: list[str], names: tuple[str, ...]) -> list[str]:
    return sorted({n for n in names for m in modules if m == n or m.startswith(n + ".")})


def test_cli_group_typo_is_one_line_before_hydra_or_any_sdk_is_imported():
    code = ("import json, sys\nfrom experiments.run import cli\nrc = cli(sys.argv[1:])\n"
            "print(json.dumps({'rc': rc, 'modules': sorted(sys.modules)}))")
    proc = _python(code, "task=no_such_task", "trainer.max_steps=2")
    out = json.loads(proc.stdout)
    assert out["rc"] == 2
    assert proc.stderr.strip().splitlines() == [proc.stderr.strip()]  # one line, no traceback
    assert proc.stderr.startswith("error: task=no_such_task: no such option; choose from ")
    assert "bbh_object_counting" in proc.stderr
    assert _loaded(out["modules"], HEAVY) == []


def test_the_module_entry_point_gives_the_same_line_and_exit_code():
    proc = subprocess.run([sys.executable, "-m", "experiments.run", "credit=nope"], cwd=ROOT, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == ["error: credit=nope: no such option; choose from adaptive, backprop, "
                                                "custom, outcome, semantic, trace"]


@pytest.mark.parametrize("argv", [["task=no_such_task"], ["credit=nope", "trainer.max_steps=2"], ["optimizer=sgd"],
                                  ["engine=gpt"], ["search=random"], ["experiment=nothing_here"],
                                  ["task=bbh", "engine=nope"]])
def test_quick_check_says_what_the_full_preflight_says(argv):
    from experiments.validate import preflight
    from textgrad_core.errors import ConfigError

    quick = group_choice_problem(argv)
    assert quick is not None
    with pytest.raises(ConfigError) as full:
        preflight(argv, multirun=False)
    assert quick == str(full.value)


@pytest.mark.parametrize("argv", [["-m", "task=nope,bbh"], ["+task=nope"], ["task=${oops}"],
                                  ["hydra.searchpath=[file:///x]", "task=mine"], ["--cfg", "job", "task=nope"],
                                  ["task=bbh"], ["trainer.max_steps=2"], []])
def test_quick_check_leaves_what_it_cannot_be_sure_of_to_the_full_preflight(argv):
    assert group_choice_problem(argv) is None


def test_a_hydra_plugin_that_could_add_config_dirs_turns_the_quick_check_off(tmp_path, monkeypatch):
    plugin = tmp_path / "hydra_plugins" / "my_search_path"
    plugin.mkdir(parents=True)
    (plugin / "__init__.py").write_text("")
    code = ("import json, sys\nfrom experiments.cli_preflight import group_choice_problem\n"
            "print(json.dumps(group_choice_problem(['task=my_own_task'])))")
    with_plugin = _python(code, env={"PYTHONPATH": os.pathsep.join([str(tmp_path), str(ROOT)])})
    assert json.loads(with_plugin.stdout) is None
    without = _python(code)
    assert json.loads(without.stdout).startswith("task=my_own_task: no such option")


# A workload run whose audit hook records, at the first connection to the server, which modules were loaded
# (the deferred imports are held back well past that point, so only the main path's own imports are seen).
_FIRST_REQUEST = """
import json, sys
port, out = int(sys.argv[1]), sys.argv[2]
seen = []
def hook(event, args):
    if event == "socket.connect" and not seen and isinstance(args[1], tuple) and args[1][1:2] == (port,):
        seen.append(sorted(sys.modules))
        with open(out, "w") as f:
            json.dump(seen[0], f)
sys.addaudithook(hook)
import textgrad_core.engines.clients as clients
clients.AFTER_FIRST_REQUEST_S = 600.0
from benchmarks import workloads
workloads.main(sys.argv[3:])
"""


def test_the_first_request_waits_for_no_credit_optimizer_or_graph_import(tmp_path):
    with MockServer(tmp_path / "calls.jsonl", ServerSettings(latency=0.0)) as server:
        port = server.base_url.split(":")[2].split("/")[0]
        first = tmp_path / "first.json"
        proc = _python(_FIRST_REQUEST, port, str(first), "--workload", "b", "--pair", "backprop+tgd", "--base-url",
                       server.base_url, "--out", str(tmp_path / "r.json"), "--batch", "3",
                       env={"OPENAI_API_KEY": "dummy"})
    assert proc.returncode == 0, proc.stderr[-2000:]
    modules = json.loads(first.read_text())
    assert "openai" in modules  # the real SDK client sends it
    assert _loaded(modules, ("networkx", "textgrad_core.graph", "textgrad_core.credit", "credit",
                             "textgrad_core.optimizers", "benchmarks.callgraph", "hydra", "omegaconf")) == []
    result = json.loads((tmp_path / "r.json").read_text())
    assert result["predicted_calls"] == {"forward": 3, "credit": 3, "optimizer": 1}  # the run itself went on


def test_deferred_imports_start_after_the_first_request_is_handed_to_a_client():
    code = """
import asyncio, json, sys, time
from textgrad_core.engines import clients
clients.import_after_first_request(["colorsys"])
before = "colorsys" in sys.modules
async def main():
    clients.shared_client(("test", "endpoint"), object)
    for _ in range(500):  # bounded: the thread starts AFTER_FIRST_REQUEST_S after the first client hand-out
        if "colorsys" in sys.modules:
            return True
        await asyncio.sleep(0.01)
    return False
print(json.dumps({"before": before, "after": asyncio.run(main())}))
"""
    out = json.loads(_python(code).stdout)
    assert out == {"before": False, "after": True}


def test_the_api_module_no_longer_pulls_networkx_into_every_task():
    code = ("import json, sys\nimport textgrad_core.loss, textgrad_core.ops, textgrad_core.task, textgrad_core.api\n"
            "print(json.dumps(sorted(sys.modules)))")
    modules = json.loads(_python(code).stdout)
    assert _loaded(modules, ("networkx", "textgrad_core.graph", "textgrad_core.credit", "openai")) == []

