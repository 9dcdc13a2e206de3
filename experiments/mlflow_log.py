"""Log a finished run's params and metrics to an MLflow tracking server (the `mlflow` extra)."""
from __future__ import annotations

import contextlib
import os
from typing import Any

from experiments.extras import require_extra
from experiments.report_data import PHASES, RunRecord


def run_params(run: RunRecord) -> dict[str, str]:
    """What identifies the run's method and data: task, credit, optimizer, search, models, seed, overrides."""
    params = {"task": run.task, **run.method, "seed": str(run.seed), "simulated": str(run.simulated),
              "status": run.status, "run_dir": str(run.path)}
    trainer = run.config.get("trainer") or {}
    for key in ("max_steps", "batch_size", "epochs", "accept", "val_size", "test_size"):
        if key in trainer:
            params[f"trainer.{key}"] = str(trainer[key])
    return {k: v[:500] for k, v in params.items()}  # MLflow caps a param value's length


def run_metrics(run: RunRecord) -> tuple[dict[str, float], list[tuple[str, float, int]]]:
    """Final numbers (scores, usage per phase) and the per-step series (val_score, best_val, train_score)."""
    final: dict[str, float] = {}
    for split in ("val", "test"):
        for which in ("initial", "final"):
            if (v := run.score(split, which)) is not None:
                final[f"{split}_{which}"] = v
    usage = run.summary.get("usage") or {}
    for key in ("calls", "cache_hits", "input_tokens", "output_tokens", "cost_usd"):
        if isinstance(usage.get(key), (int, float)):
            final[f"usage_{key}"] = float(usage[key])
    for phase in PHASES:
        for key, value in run.phase(phase).items():
            final[f"{phase}_{key}"] = value
    final["failures"] = float(run.failures)
    series = [(key, float(m[key]), int(m["step"])) for m in run.metrics if isinstance(m.get("step"), int)
              for key in ("val_score", "best_val", "train_score") if isinstance(m.get(key), (int, float))]
    return final, series


def log_run(run: RunRecord, tracking_uri: str, experiment: str = "textgrad-core") -> tuple[str, str]:
    """Create one MLflow run holding the run's params, metrics and tags; returns (experiment_id, mlflow run id)."""
    require_extra("mlflow")
    from mlflow import MlflowClient
    from mlflow.entities import Metric, Param, RunTag

    _check_reachable(tracking_uri)
    with _few_retries():
        return _log(run, MlflowClient(tracking_uri=tracking_uri), experiment, Metric, Param, RunTag)


def _check_reachable(tracking_uri: str, timeout_s: float = 3.0) -> None:
    """Fail fast for an HTTP tracking server that does not answer (MLflow's own client retries for minutes)."""
    if not tracking_uri.startswith(("http://", "https://")):
        return  # file: and sqlite: stores are local
    import urllib.error
    import urllib.request
    try:
        urllib.request.urlopen(tracking_uri.rstrip("/") + "/health", timeout=timeout_s).close()
    except (urllib.error.URLError, OSError) as exc:
        raise ConnectionError(f"MLflow tracking server {tracking_uri} unreachable: {exc}") from exc


@contextlib.contextmanager
def _few_retries():
    """Bound MLflow's HTTP retries while this run is logged (its defaults retry for minutes)."""
    saved = {k: os.environ.get(k) for k in ("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "MLFLOW_HTTP_REQUEST_TIMEOUT")}
    os.environ.update(MLFLOW_HTTP_REQUEST_MAX_RETRIES="2", MLFLOW_HTTP_REQUEST_TIMEOUT="20")
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _log(run: RunRecord, client: Any, experiment: str, Metric: Any, Param: Any, RunTag: Any) -> tuple[str, str]:
    found = client.get_experiment_by_name(experiment)
    experiment_id = found.experiment_id if found else client.create_experiment(experiment)
    tags = {"mlflow.runName": run.run_id, "textgrad.run_id": run.run_id, "textgrad.simulated": str(run.simulated)}
    mrun = client.create_run(experiment_id, tags=tags)
    final, series = run_metrics(run)
    ts = int(float(run.summary.get("ts") or 0) * 1000) or 0
    metrics = [Metric(k, v, ts, 0) for k, v in final.items()] + [Metric(k, v, ts, step) for k, v, step in series]
    params = [Param(k, v) for k, v in run_params(run).items()]
    for i in range(0, max(len(metrics), 1), 900):  # MLflow accepts at most 1000 metrics per batch
        client.log_batch(mrun.info.run_id, metrics=metrics[i:i + 900], params=params if i == 0 else [],
                         tags=[RunTag(k, v) for k, v in tags.items()] if i == 0 else [])
    client.set_terminated(mrun.info.run_id, status="FINISHED" if run.status == "completed" else "KILLED")
    return experiment_id, mrun.info.run_id
