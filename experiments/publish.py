"""The end of every run: write spans.jsonl, then export to OTLP and MLflow when configured. Never raises."""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Mapping

from textgrad_core.runlog import JsonlLog, redact

log = logging.getLogger(__name__)
MLFLOW_EXPERIMENT_HEADER = "x-mlflow-experiment-id"  # MLflow's OTLP endpoint files traces under this experiment
MLFLOW_RUN_HEADER = "x-mlflow-run-id"


def _section(cfg: Mapping[str, Any], key: str) -> dict[str, Any]:
    value = cfg.get(key) if isinstance(cfg, Mapping) else None
    return dict(value) if isinstance(value, Mapping) else {}


def publish_run(run_dir: Path, cfg: Mapping[str, Any]) -> None:
    """spans.jsonl always; MLflow params/metrics when `mlflow.tracking_uri` is set; OTLP/HTTP spans when
    `telemetry.otlp_endpoint` is set. An unreachable server costs one warning line and an event, never the run."""
    run_dir = Path(run_dir)
    events = JsonlLog(run_dir / "events.jsonl")
    telemetry, mlflow_cfg = _section(cfg, "telemetry"), _section(cfg, "mlflow")
    try:
        from experiments.telemetry import write_spans
        run, spans = write_spans(run_dir)
    except Exception as exc:  # a torn or foreign run directory must not fail the run that just finished
        _warn(events, "spans", f"could not build spans.jsonl: {exc}")
        return
    headers = {str(k): str(v) for k, v in (telemetry.get("headers") or {}).items()}
    if mlflow_cfg.get("tracking_uri"):
        try:
            from experiments.mlflow_log import log_run
            experiment_id, mlflow_run = log_run(run, str(mlflow_cfg["tracking_uri"]),
                                                str(mlflow_cfg.get("experiment") or "textgrad-core"))
            headers.setdefault(MLFLOW_EXPERIMENT_HEADER, experiment_id)
            headers.setdefault(MLFLOW_RUN_HEADER, mlflow_run)
            events.write({"kind": "mlflow_logged", "experiment_id": experiment_id, "mlflow_run_id": mlflow_run})
        except Exception as exc:
            _warn(events, "mlflow", f"MLflow logging to {mlflow_cfg['tracking_uri']} failed: {exc}")
    if telemetry.get("otlp_endpoint"):
        endpoint = str(telemetry["otlp_endpoint"])
        try:
            from experiments.telemetry import export_otlp
            export_otlp(spans, endpoint, headers, float(telemetry.get("timeout_s") or 30.0))
            events.write({"kind": "telemetry_exported", "endpoint": endpoint, "spans": len(spans)})
        except Exception as exc:
            _warn(events, "otlp", f"OTLP export to {endpoint} failed ({len(spans)} spans kept in spans.jsonl): {exc}")


def _warn(events: JsonlLog, target: str, message: str) -> None:
    line = redact(message.splitlines()[0] if message else target)[:300]
    log.warning(line)
    events.write({"kind": "publish_failed", "target": target, "error": line})
