"""Smoke slice of the benchmarks: tiny sizes, 0 ms latency, no peers. Asserts figures exist and are sane, never a wall time."""
from __future__ import annotations

import asyncio
import json

import openai
import pytest

from benchmarks import bench
from benchmarks.callgraph import CallDAG
from benchmarks.calllog import busy_time, peak_in_flight, read_log, summarize
from benchmarks.mock_server import MockServer, ServerSettings
from benchmarks.replies import classify, reply_text
from benchmarks.report import write_report


def test_call_dag_depth_and_schedule():
    dag = CallDAG()
    roots = [dag.add(f"f{i}", "forward", []) for i in range(10)]
    dag.add("opt", "optimizer", roots)
    assert dag.depth() == 2
    assert dag.schedule(8) == 3  # 10 calls on 8 slots take two rounds, then the optimizer
    assert dag.schedule(100) == 2
    assert dag.count() == {"forward": 10, "optimizer": 1}


def test_log_figures_from_intervals():
    records = [{"t_start": 0.0, "t_end": 1.0}, {"t_start": 0.5, "t_end": 1.5}, {"t_start": 3.0, "t_end": 4.0}]
    assert peak_in_flight(records) == 2
    assert busy_time(records) == pytest.approx(2.5)


def test_replies_follow_each_call_format():
    joint = [{"role": "user", "content": '<JOINT_UPDATE>\n<PARAMETERS_JSON>\n{"solver.instruction": {}}\n</PARAMETERS_JSON>'}]
    assert classify(joint) == "optimizer"
    assert json.loads(reply_text("optimizer", joint))["updates"].keys() == {"solver.instruction"}
    forward = [{"role": "user", "content": "How many?"}]
    assert classify(forward) == "forward"
    assert reply_text("forward", forward).splitlines()[-1].startswith("Answer: ")
    assert reply_text("forward", forward) == reply_text("forward", forward)  # deterministic


def test_mock_server_through_the_openai_client(tmp_path):
    log = tmp_path / "calls.jsonl"
    with MockServer(log, ServerSettings(latency=0.0, error_rate=0.0)) as server:
        async def many():
            client = openai.AsyncOpenAI(api_key="dummy", base_url=server.base_url, max_retries=0)
            return await asyncio.gather(*(client.chat.completions.create(
                model="m", messages=[{"role": "user", "content": f"question {i}"}]) for i in range(20)))
        replies = asyncio.run(many())
    assert all(r.usage.prompt_tokens > 0 and r.usage.completion_tokens > 0 for r in replies)
    summary = summarize(read_log(log))
    assert summary.calls == 20 and summary.by_kind["forward"]["calls"] == 20
    assert 1 <= summary.peak_in_flight <= 20 and summary.busy_s > 0


def test_mock_server_error_rate_reaches_the_client_as_status(tmp_path):
    with MockServer(tmp_path / "calls.jsonl", ServerSettings(error_rate=1.0)) as server:
        client = openai.OpenAI(api_key="dummy", base_url=server.base_url, max_retries=0)
        with pytest.raises(openai.InternalServerError):
            client.chat.completions.create(model="m", messages=[{"role": "user", "content": "q"}])


def test_smoke_slice_produces_sane_figures(tmp_path):
    figures = bench.run_all(tmp_path / "work", smoke=True, with_peers=False, log=lambda m: None)
    runs = figures["ours"]
    assert {r["pair"] for r in runs} == {"backprop+tgd", "trace+joint"}
    for r in runs:
        assert r["returncode"] == 0, r["stderr_tail"]
        predicted = sum(r["result"]["predicted_calls"].values())
        assert r["server"]["calls"] == predicted  # the call DAG explains every call the server saw
        assert r["server"]["errors"] == 0
        assert r["server"]["prompt_tokens"] > 0 and r["server"]["completion_tokens"] > 0
        assert r["first_request_s"] is not None and 0 < r["first_request_s"] < r["wall_s"]
        assert 1 <= r["server"]["peak_in_flight"] <= r["result"]["slots"]
        assert r["result"]["depth"] <= r["result"]["schedule_rounds"] <= predicted
        assert r["peak_rss_mb"] > 10 and r["cpu_ms_per_call"] > 0
        assert all("revision" in v for v in r["result"]["final_values"].values())  # the optimizer's reply was applied
    backprop = next(r for r in runs if r["pair"] == "backprop+tgd")
    assert backprop["server"]["by_kind"]["credit"]["calls"] > 0
    profile = next(iter(figures["profiles"].values()))
    assert profile["ms_per_call"]["framework"] > 0 and profile["ms_per_call"]["openai SDK + HTTP"] > 0
    assert figures["imports"]["import textgrad_core"] is not None
    assert figures["imports"]["CLI config error lines"] >= 1
    steps = {r["step"] for r in figures["scale"]}
    assert {"record", "minimal subgraph", "backprop bookkeeping", "trace serialization"} <= steps
    assert all(r["seconds"] >= 0 and r["peak_mb"] > 0 for r in figures["scale"] if "seconds" in r)
    doc = tmp_path / "benchmarks.md"
    write_report(figures, doc)
    text = doc.read_text()
    assert "## Our workloads" in text and "## Scale" in text and "| (a) planner" in text


def test_every_peer_run_starts_with_an_empty_disk_cache(tmp_path):
    """A second `make bench` once reused the first one's TextGrad cache: the server saw 1 of its 65 calls."""
    from benchmarks.peers import fresh_cache_dir

    first = fresh_cache_dir(tmp_path, "textgrad_b_0ms")
    (first / "textgrad").mkdir()
    (first / "textgrad" / "cache_openai_gpt-4o.db").write_text("an earlier run's replies")
    again = fresh_cache_dir(tmp_path, "textgrad_b_0ms")
    assert again == first and again.is_dir() and list(again.iterdir()) == []
