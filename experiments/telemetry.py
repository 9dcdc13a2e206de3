"""OpenTelemetry spans run -> step -> phase -> LLM call, built from a run directory's files after the run.

spans.jsonl is always written into the run directory (no extra needed); with `telemetry.otlp_endpoint` set, the
same spans (same ids) are exported over OTLP/HTTP (the `telemetry` extra). Attributes follow the OpenTelemetry
GenAI semantic conventions (gen_ai.*), plus textgrad.* for phase, step, role, split, example and parameter ids."""
from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path
from typing import Any

from experiments.report_data import RunRecord

log = logging.getLogger(__name__)
PHASE_OF_ROLE = {"forward": "forward", "credit": "credit", "judge": "credit", "optimizer": "optimizer"}
NS = 1_000_000_000


def _id(*parts: Any, hex_len: int = 16) -> str:
    """Deterministic span/trace id from the run id and the span's place in the tree (never all zeros)."""
    digest = hashlib.sha256("/".join(map(str, parts)).encode()).hexdigest()[:hex_len]
    return digest if int(digest, 16) else "1".rjust(hex_len, "0")


def _phase(call: dict[str, Any], run: RunRecord) -> str:
    if call.get("phase"):
        return str(call["phase"])
    if call.get("split") == "test":
        return "test"
    return PHASE_OF_ROLE.get(str(call.get("role")), "validation")


def _step(call: dict[str, Any], metric_ts: list[tuple[int, float]]) -> int:
    """The call's step; for call logs without one, the first step whose metric record was written after it."""
    if isinstance(call.get("step"), int):
        return call["step"]
    ts = float(call.get("ts") or 0)
    for step, end in metric_ts:
        if ts <= end:
            return step
    return metric_ts[-1][0] if metric_ts else 0  # the final test evaluation belongs to the last step


def call_attributes(call: dict[str, Any], phase: str, step: int) -> dict[str, Any]:
    """GenAI semantic-convention attributes of one LLM call, plus the run's own join keys."""
    usage = call.get("usage") or {}
    attrs: dict[str, Any] = {
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": str(call.get("provider") or "unknown"),
        "gen_ai.request.model": str(call.get("model") or "unknown"),
        "gen_ai.usage.input_tokens": int(usage.get("input_tokens") or 0),
        "gen_ai.usage.output_tokens": int(usage.get("output_tokens") or 0),
        "textgrad.phase": phase, "textgrad.step": step, "textgrad.role": str(call.get("role") or ""),
        "textgrad.tag": str(call.get("tag") or ""), "textgrad.cache_hit": bool(call.get("cache_hit")),
        "textgrad.cost_usd": float(call.get("cost_usd") or 0.0), "textgrad.simulated": bool(call.get("simulated")),
    }
    if call.get("temperature") is not None:
        attrs["gen_ai.request.temperature"] = float(call["temperature"])
    if call.get("finish_reason"):
        attrs["gen_ai.response.finish_reasons"] = [str(call["finish_reason"])]
    if usage.get("cached_tokens"):
        attrs["gen_ai.usage.cache_read.input_tokens"] = int(usage["cached_tokens"])
    for key in ("split", "example_id", "request_id", "run_id"):
        if call.get(key) is not None:
            attrs[f"textgrad.{key}"] = str(call[key])
    if call.get("request_id"):
        attrs["gen_ai.response.id"] = str(call["request_id"])
    if phase == "optimizer" and call.get("tag"):
        attrs["textgrad.parameter_ids"] = [str(call["tag"]).split(":")[-1]]
    if call.get("error"):
        attrs["error.type"] = str(call["error"])[:200]
    return attrs


def _span(run_id: str, path: tuple, name: str, parent: str | None, start: float, end: float,
          attrs: dict[str, Any], error: str | None = None) -> dict[str, Any]:
    return {"name": name, "trace_id": _id(run_id, hex_len=32), "span_id": _id(run_id, *path), "parent_span_id": parent,
            "start_time_unix_nano": int(start * NS), "end_time_unix_nano": int(max(end, start) * NS),
            "attributes": attrs, "status": {"code": "ERROR", "message": error} if error else {"code": "UNSET"}}


def build_spans(run: RunRecord) -> list[dict[str, Any]]:
    """The span tree of a run, parents before children, with deterministic ids derived from the run id."""
    # A job's run id repeats across sweeps (000_<task>_...): the trace id also takes the sweep and creation time.
    run_id = "/".join(str(x) for x in (run.run.get("sweep_dir") or "", run.run_id, run.run.get("created") or ""))
    metric_ts = sorted((m["step"], float(m.get("ts") or 0)) for m in run.metrics if isinstance(m.get("step"), int))
    tree: dict[int, dict[str, list[dict[str, Any]]]] = {}
    for call in run.calls:
        phase = _phase(call, run)
        tree.setdefault(_step(call, metric_ts), {}).setdefault(phase, []).append(call)
    times = [float(c.get("ts") or 0) for c in run.calls] + [t for _, t in metric_ts]
    start, end = (min(times), max(times)) if times else (0.0, 0.0)
    s = run.summary
    root = _span(run_id, ("run",), f"run {run.run_id}", None, start, end, {
        "textgrad.run_id": run.run_id, "textgrad.task": run.task, "textgrad.credit": run.method["credit"],
        "textgrad.optimizer": run.method["optimizer"], "textgrad.status": run.status,
        "textgrad.simulated": run.simulated, "textgrad.parameter_ids": sorted(s.get("parameters") or {}),
        **{f"textgrad.{split}.{w}": v for split in ("val", "test") for w in ("initial", "final")
           if (v := run.score(split, w)) is not None}}, s.get("error") if run.status == "failed" else None)
    spans = [root]
    metrics = {m.get("step"): m for m in run.metrics}
    for step in sorted(tree):
        calls_of_step = [c for cs in tree[step].values() for c in cs]
        lo = min(float(c.get("ts") or 0) - float(c.get("latency_s") or 0) for c in calls_of_step)
        hi = max(float(c.get("ts") or 0) for c in calls_of_step)
        m = metrics.get(step) or {}
        attrs = {"textgrad.step": step, "textgrad.decision": str(m.get("decision") or ""),
                 "textgrad.parameter_ids": sorted({u.get("param_id") for u in m.get("updates") or [] if u.get("param_id")})}
        if isinstance(m.get("val_score"), (int, float)):
            attrs["textgrad.val_score"] = float(m["val_score"])
        step_span = _span(run_id, ("step", step), f"step {step}", root["span_id"], lo, hi, attrs)
        spans.append(step_span)
        for phase, calls in sorted(tree[step].items()):
            p_lo = min(float(c.get("ts") or 0) - float(c.get("latency_s") or 0) for c in calls)
            p_hi = max(float(c.get("ts") or 0) for c in calls)
            phase_span = _span(run_id, ("step", step, phase), phase, step_span["span_id"], p_lo, p_hi,
                               {"textgrad.step": step, "textgrad.phase": phase, "textgrad.calls": len(calls)})
            spans.append(phase_span)
            for i, c in enumerate(calls):
                t = float(c.get("ts") or 0)
                model = c.get("model") or "unknown"
                spans.append(_span(run_id, ("step", step, phase, i, c.get("request_id")), f"chat {model}",
                                   phase_span["span_id"], t - float(c.get("latency_s") or 0), t,
                                   call_attributes(c, phase, step), str(c["error"])[:500] if c.get("error") else None))
    return spans


def write_spans(run_dir: Path) -> tuple[RunRecord, list[dict[str, Any]]]:
    """Build the spans of a run and write them to <run_dir>/spans.jsonl (replacing an older file)."""
    run = RunRecord.load(run_dir)
    spans = build_spans(run)
    tmp = Path(run_dir) / ".spans.jsonl.tmp"
    tmp.write_text("".join(json.dumps(sp, ensure_ascii=False) + "\n" for sp in spans), encoding="utf-8")
    tmp.replace(Path(run_dir) / "spans.jsonl")
    return run, spans


def traces_url(endpoint: str) -> str:
    """OTLP/HTTP traces URL: the endpoint as given when it names /v1/traces, else with that path appended."""
    endpoint = endpoint.rstrip("/")
    return endpoint if endpoint.endswith("/v1/traces") else endpoint + "/v1/traces"


def export_otlp(spans: list[dict[str, Any]], endpoint: str, headers: dict[str, str] | None = None,
                timeout_s: float = 5.0, service_name: str = "textgrad-core") -> None:
    """Send the spans (with their ids and times) to an OTLP/HTTP collector; raises ConnectionError on failure."""
    from experiments.extras import require_extra
    require_extra("telemetry")
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import ReadableSpan
    from opentelemetry.sdk.trace.export import SpanExportResult
    from opentelemetry.sdk.util.instrumentation import InstrumentationScope
    from opentelemetry.trace import SpanContext, SpanKind, Status, StatusCode, TraceFlags

    resource = Resource.create({"service.name": service_name})
    scope = InstrumentationScope("textgrad_core.experiments.telemetry")

    def ctx(trace_id: str, span_id: str) -> SpanContext:
        return SpanContext(int(trace_id, 16), int(span_id, 16), is_remote=False, trace_flags=TraceFlags(1))

    readable = []
    for sp in spans:
        parent = ctx(sp["trace_id"], sp["parent_span_id"]) if sp["parent_span_id"] else None
        error = sp["status"]["code"] == "ERROR"
        readable.append(ReadableSpan(
            name=sp["name"], context=ctx(sp["trace_id"], sp["span_id"]), parent=parent, resource=resource,
            attributes=sp["attributes"], kind=SpanKind.CLIENT if sp["name"].startswith("chat ") else SpanKind.INTERNAL,
            status=Status(StatusCode.ERROR, sp["status"].get("message")) if error else Status(StatusCode.UNSET),
            start_time=sp["start_time_unix_nano"], end_time=sp["end_time_unix_nano"], instrumentation_scope=scope))
    exporter = OTLPSpanExporter(endpoint=traces_url(endpoint), headers=dict(headers or {}), timeout=timeout_s)
    otel_log = logging.getLogger("opentelemetry.exporter.otlp.proto.http")
    level = otel_log.level
    otel_log.setLevel(logging.CRITICAL)  # its retry chatter would add many lines; we report one
    try:
        for i in range(0, len(readable), 512):
            if exporter.export(readable[i:i + 512]) != SpanExportResult.SUCCESS:
                raise ConnectionError(f"OTLP export to {traces_url(endpoint)} failed")
    finally:
        otel_log.setLevel(level)
        exporter.shutdown()
