"""Write docs/benchmarks.md (and the scale plot beside it) from the figures `benchmarks.bench` measured."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from benchmarks.spec import WORKLOADS

PHASES = ("forward", "judge", "credit", "optimizer")


def _f(x: Any, digits: int = 2) -> str:
    return "n/a" if x is None else (f"{x:.{digits}f}" if isinstance(x, float) else str(x))


def _run(figs: dict[str, Any], key: str, pair: str, latency: float) -> dict[str, Any] | None:
    return next((r for r in figs["ours"] if r["workload"] == key and r["pair"] == pair and r["latency_s"] == latency), None)


def ours_table(figs: dict[str, Any]) -> list[str]:
    """Wall, limits, start-up, in flight, CPU and memory of our runs."""
    rows = ["| workload | credit+optimizer | wall 0 ms (s) | wall 300 ms (s) | dependency limit (s) | schedule limit, 8 slots (s) "
            "| wall / dependency | wall / schedule | first request (s) | peak in flight | CPU ms/call (process) | peak RSS (MB) |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for key in WORKLOADS:
        for pair in ("backprop+tgd", "trace+joint"):
            r0, r3 = _run(figs, key, pair, 0.0), _run(figs, key, pair, 0.3)
            if r0 is None:
                continue
            hot = r3 or r0
            rows.append(f"| ({key}) {WORKLOADS[key].title} | {pair} | {_f(r0['wall_s'])} | {_f(r3 and r3['wall_s'])} "
                        f"| {_f(r3 and r3.get('dependency_limit_s'))} | {_f(r3 and r3.get('schedule_limit_s'))} "
                        f"| {_f(r3 and r3.get('wall_over_dependency'))} | {_f(r3 and r3.get('wall_over_schedule'))} "
                        f"| {_f(hot['first_request_s'])} | {hot['server']['peak_in_flight']} | {_f(r0.get('cpu_ms_per_call'), 1)} "
                        f"| {_f(r0.get('peak_rss_mb'), 0)} |")
    return rows


def phase_table(figs: dict[str, Any]) -> list[str]:
    """Calls and prompt/completion tokens per phase (0 ms runs; the server's count, which matched the call DAG)."""
    rows = ["| workload | credit+optimizer | " + " | ".join(f"{p}: calls / prompt tok / completion tok" for p in PHASES)
            + " | total calls | DAG predicted | duplicate prompts |", "|---|---|" + "---|" * (len(PHASES) + 3)]
    for r in figs["ours"]:
        if r["latency_s"] != 0.0:
            continue
        k = r["server"]["by_kind"]
        predicted = sum((r["result"].get("predicted_calls") or {}).values()) if r["result"] else None
        rows.append(f"| ({r['workload']}) | {r['pair']} | " + " | ".join(
            f"{k[p]['calls']} / {k[p]['prompt_tokens']} / {k[p]['completion_tokens']}" for p in PHASES)
            + f" | {r['server']['calls']} | {predicted} | {r['server']['duplicate_prompts']} |")
    return rows


def profile_table(figs: dict[str, Any]) -> list[str]:
    """CPU ms per call in steady state, split by where it is spent."""
    buckets = ("framework", "openai SDK + HTTP", "pydantic", "asyncio + sockets", "benchmark harness", "other")
    rows = ["| workload | calls | CPU ms/call (run, unprofiled process clock) | " + " | ".join(f"{b} (ms/call, profiled)" for b in buckets) + " |",
            "|---|---|---|" + "---|" * len(buckets)]
    for name, p in figs["profiles"].items():
        split = p.get("ms_per_call") or {}
        rows.append(f"| {name} | {p['calls']} | {_f(p.get('cpu_ms_per_call_run'))} | " + " | ".join(_f(split.get(b)) for b in buckets) + " |")
    return rows


def top_functions(figs: dict[str, Any], name: str) -> list[str]:
    """The functions with the most own CPU time in one profiled run."""
    p = figs["profiles"].get(name) or {}
    rows = ["| function | bucket | own ms | cumulative ms | calls |", "|---|---|---|---|---|"]
    for t in p.get("top", [])[:12]:
        rows.append(f"| `{t['function']}` | {t['bucket']} | {t['own_ms']:.1f} | {t['cum_ms']:.1f} | {t['ncalls']} |")
    return rows


def peer_table(figs: dict[str, Any]) -> list[str]:
    """Peers side by side with the matching pair of ours, and the ratios ours / peer."""
    ours_for = {"textgrad": "backprop+tgd", "trace": "trace+joint"}
    rows = ["| workload | peer (version) | latency | peer wall (s) | ours wall (s) | wall ours/peer | peer calls | ours calls "
            "| calls ours/peer | peer tokens (prompt+completion) | ours tokens | tokens ours/peer | peer first request (s) |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    problems = []
    for r in figs["peers"]:
        if r.get("error") and "server" not in r:
            problems.append(f"- {r['name']}: {r['error']}")
            continue
        if r.get("error"):
            problems.append(f"- {r['name']}: {r['error']}")
        mine = _run(figs, r["workload"], ours_for[r["peer"]], r["latency_s"])
        ps, ms = r["server"], mine["server"] if mine else None
        pt, mt = ps["prompt_tokens"] + ps["completion_tokens"], (ms["prompt_tokens"] + ms["completion_tokens"]) if ms else None
        rows.append(f"| ({r['workload']}) | {r['peer']} ({r.get('version', '?')}) vs ours {ours_for[r['peer']]} | {r['latency_s'] * 1000:.0f} ms "
                    f"| {_f(r['wall_s'])} | {_f(mine and mine['wall_s'])} | {_f(mine and mine['wall_s'] / r['wall_s'])} "
                    f"| {ps['calls']} | {ms and ms['calls']} | {_f(ms and ms['calls'] / max(ps['calls'], 1))} | {pt} | {mt} "
                    f"| {_f(mt and mt / max(pt, 1))} | {_f(r['first_request_s'])} |")
    return rows + ([""] + ["Peer runs that did not complete:"] + problems if problems else [])


def scale_table(figs: dict[str, Any]) -> list[str]:
    """Seconds and peak MiB per step and size."""
    rows = ["| graph | ops | step | seconds | peak MiB | note |", "|---|---|---|---|---|---|"]
    for r in figs["scale"]:
        note = r.get("skipped") or (f"{r['trace_tokens']} trace tokens" if "trace_tokens" in r else
                                   (f"{r['subgraph_nodes']} nodes kept" if "subgraph_nodes" in r else ""))
        if r.get("strategies"):
            note = f"credit by {', '.join(r['strategies'])}" + (f"; {note}" if note and r.get("trace_tokens") else "")
        rows.append(f"| {r['graph']} | {r['ops']} | {r['step']} | {_f(r.get('seconds'), 3)} | {_f(r.get('peak_mb'), 1)} | {note} |")
    return rows


def scale_plot(figs: dict[str, Any], path: Path) -> bool:
    """A log-log plot of seconds against ops for each step of the generated graphs; False without matplotlib."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    fig, ax = plt.subplots(figsize=(7, 4.5))
    steps = sorted({r["step"] for r in figs["scale"] if r["graph"] == "generated"})
    for step in steps:
        pts = [(r["ops"], r["seconds"]) for r in figs["scale"] if r["graph"] == "generated" and r["step"] == step and "seconds" in r]
        if pts:
            ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=step)
    xs = sorted({r["ops"] for r in figs["scale"] if r["graph"] == "generated"})
    if xs:
        ax.plot(xs, [1e-5 * x for x in xs], "k:", label="linear (reference)")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("traced ops in the graph")
    ax.set_ylabel("seconds")
    ax.set_title("Scale of the graph bookkeeping (zero-latency engine)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def targets(figs: dict[str, Any]) -> list[str]:
    """Issue 12's item-2 targets against what was measured (measured only: nothing here optimizes)."""
    rows = ["| target | measured | met |", "|---|---|---|"]
    hot = [r for r in figs["ours"] if r["latency_s"] == 0.3 and r.get("wall_over_schedule")]
    if hot:
        worst = max(hot, key=lambda r: r["wall_over_schedule"])
        rows.append(f"| wall ≤ 1.15 × schedule limit at 300 ms, every workload | worst {worst['wall_over_schedule']:.2f} "
                    f"(({worst['workload']}) {worst['pair']}) | {'yes' if worst['wall_over_schedule'] <= 1.15 else 'no'} |")
        first = max(r["first_request_s"] for r in hot if r["first_request_s"] is not None)
        rows.append(f"| process start to first request ≤ 1.0 s | worst {first:.2f} s | {'yes' if first <= 1.0 else 'no'} |")
    if figs["profiles"]:
        total = max(p.get("cpu_ms_per_call_run") or 0 for p in figs["profiles"].values())
        fw = max((p.get("ms_per_call") or {}).get("framework", 0) for p in figs["profiles"].values())
        rows.append(f"| steady-state CPU per call, total ≤ 3 ms | worst {total:.2f} ms (unprofiled clock) | {'yes' if total <= 3 else 'no'} |")
        rows.append(f"| steady-state CPU per call, framework ≤ 0.5 ms | worst {fw:.2f} ms (profiled own time) | {'yes' if fw <= 0.5 else 'no'} |")
    imp = figs.get("imports") or {}
    if imp.get("import textgrad_core") is not None:
        rows.append(f"| `import textgrad_core` ≤ 0.3 s | {imp['import textgrad_core']:.2f} s | {'yes' if imp['import textgrad_core'] <= 0.3 else 'no'} |")
    if imp.get("CLI config error (wall)") is not None:
        rows.append(f"| CLI config error ≤ 1.5 s | {imp['CLI config error (wall)']:.2f} s | {'yes' if imp['CLI config error (wall)'] <= 1.5 else 'no'} |")
    big = [r for r in figs["scale"] if r["graph"] == "generated" and r["ops"] >= 9000]
    if big:
        worst = max(big, key=lambda r: r.get("seconds") or float("inf"))
        sec = worst.get("seconds")
        rows.append(f"| scale: every step on 10,000 ops < 2 s | worst {_f(sec, 2)} s ({worst['step']}) | {'yes' if sec is not None and sec < 2 else 'no'} |")
    return rows


def write_report(figs: dict[str, Any], doc: Path) -> None:
    """Write the markdown report (and benchmarks_scale.png beside it)."""
    doc.parent.mkdir(parents=True, exist_ok=True)
    plot = doc.parent / "benchmarks_scale.png"
    has_plot = scale_plot(figs, plot)
    m = figs["machine"]
    imp = figs.get("imports") or {}
    first_profile = next(iter(figs["profiles"]), "")
    lines = [
        "# Benchmarks", "",
        "Generated by `make bench` (`python -m benchmarks.bench`); do not edit by hand. "
        + ("**Smoke slice: tiny sizes, not the real figures.**" if figs.get("smoke") else ""), "",
        "## Method", "",
        "- **Server.** `benchmarks/mock_server.py`, a local OpenAI-compatible chat-completions server (asyncio, 127.0.0.1, "
        "keep-alive, any number of requests at once), started as its own process for every measured run so its CPU is "
        "not charged to the client. Latency is fixed per call (0 ms or 300 ms here; a seeded log-normal spread is "
        "available). Replies are deterministic functions of the request, in the format each kind of call asks for "
        "(`benchmarks/replies.py`); every judge says the answer is wrong, so every example sends feedback. Tokens are "
        "characters / 4 for every client, so token ratios between frameworks are exact ratios of characters sent.",
        "- **Clients.** Every run is a fresh process (`python -m benchmarks.workloads`, or a peer's script in its own "
        "virtualenv) driving the real `openai` SDK through `base_url`; wall time is from spawning it to its exit "
        "(interpreter start, imports and set-up included); CPU and peak RSS are the kernel's figures for that process.",
        "- **Workloads** (`benchmarks/workloads.py`, public pieces only: `LLMCall`, `JudgeLoss`/`MetricLoss`, the credit "
        "strategy's `assign`, the optimizer's `step`; one engine config for every role, so one client and one bound of "
        "8 concurrent calls; cache off): " + "; ".join(f"({s.key}) {s.title}, batch {s.batch}, {s.steps} step(s)"
                                                       for s in WORKLOADS.values()) + ".",
        "- **Limits.** From the recorded graphs each run builds the DAG of calls it had to make (`benchmarks/callgraph.py`: "
        "forward and judge calls, one backprop call per edge of the minimal subgraph, optimizer calls after all credit); "
        "its call count is checked against the server's. *Dependency limit* = longest chain of dependent calls × "
        "latency; *schedule limit* = the DAG's makespan on the 8 concurrency slots × latency.",
        "- **CPU split.** A separate run at 0 ms whose first call is a warm-up made inside the run, in its own event "
        "loop and through its own engines (so the SDK import, the client and its TLS context are the ones the run "
        "then uses) and the imports deferred past the first request are done; cProfile and the steady-state clock "
        "start after that, while the process's wall and CPU include it, as they include every import. Each "
        "function's own time is bucketed by the package its file is in (`other`: the standard library and every "
        "package not named). cProfile "
        "inflates the totals; the unprofiled process clock of the same run is given beside it.",
        "- **Start-up.** What the first request needs is imported before it (the SDK in a background thread, the "
        "engines, ops and losses); graphs, credit strategies, optimizers and the call DAG are imported while the "
        "first requests are in flight (`textgrad_core.engines.clients.import_after_first_request`). "
        "`tests/test_startup.py` checks that order from the modules loaded at the first connection.",
        "- **Peers.** TextGrad (`pip install textgrad`) and Trace (`pip install trace-opt`) are installed by the "
        "benchmark into their own virtualenvs under the work dir (never project dependencies), and express workloads "
        "(a) and (b) the way their tutorials do (`benchmarks/peers/`), pointed at the same server with "
        "`OPENAI_BASE_URL` and `OPENAI_API_KEY=dummy`, with a fresh disk cache per run.", "",
        "## Machine", "",
        f"{m['cpu']}, {m['cores']} cores; Python {m['python']}; openai {m['openai']}; {m['platform']}; measured {m['date']}.", "",
        "## Targets of issue 12 (item 2), as measured", "", *targets(figs), "",
        "## Our workloads", "", *ours_table(figs), "",
        "## Calls and tokens per phase (0 ms runs)", "", *phase_table(figs), "",
        "## CPU per call, steady state, and where it goes", "", *profile_table(figs), "",
        f"Functions with the most own time in `{first_profile}` (profiled):", "", *top_functions(figs, first_profile), "",
        "## Import and start-up times", "",
        "| what | seconds |", "|---|---|",
        *[f"| `{k}` | {_f(v)} |" for k, v in imp.items() if isinstance(v, float)], "",
        f"The CLI config error (`python -m experiments.run task=no_such_task`) printed {imp.get('CLI config error lines')} "
        f"line(s) on stderr, the last: `{imp.get('CLI config error message', '')}`", "",
        "## Peers side by side", "",
        *(peer_table(figs) if figs["peers"] else ["(not run in this invocation)"]), "",
        "## Scale", "", *scale_table(figs), "",
        *(["![scale](benchmarks_scale.png)", ""] if has_plot else ["(matplotlib not installed: no plot; `pip install -e .[bench]`)", ""]),
        "## How to rerun", "",
        "```", "make bench                                   # everything, rewrites this file (a few minutes)",
        "python -m benchmarks.bench --no-peers        # without TextGrad and Trace",
        "python -m benchmarks.bench --from-figures .cache/bench/figures.json   # only re-render", 
        "python -m benchmarks.mock_server --latency 0.3 --log calls.jsonl   # the server alone", "```", "",
    ]
    doc.write_text("\n".join(lines), encoding="utf-8")
