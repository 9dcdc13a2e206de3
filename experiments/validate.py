"""Validate a run's whole config (and, from the command line, every job of a sweep) before anything runs.

`validate_config(cfg)` checks a resolved config: every section against its pydantic model (trainer, budget,
engines, pricing, ...) or its constructor's signature (task, credit, optimizer, search), then builds the task,
credit strategy, optimizer and search once so their own checks run. `preflight(argv)` does that for every job the
command line would run, before Hydra creates anything, and loads each task's data to check its splits. A problem
is one ConfigError with a one-line message naming the key, the value and the fix.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Mapping

from pydantic import BaseModel, ConfigDict, Field

from experiments import validate_hydra
from experiments.factory import build_credit, build_optimizer, build_search, role_configs
from experiments.validate_fields import model_problems, show, signature_problems, unknown_key, value_problems
from tasks.registry import load_task, resolve_task
from textgrad_core import registry
from textgrad_core.engines import ENGINE_ROLES
from textgrad_core.engines.config import BudgetConfig, EngineConfig, Price
from textgrad_core.errors import ConfigError
from experiments.estimate_target import TargetSection
from textgrad_core.gepa import GEPASearch
from textgrad_core.search import SELECTIONS, CandidateSearch
from textgrad_core.trainer import TrainerConfig

MAX_JOBS = 256  # sweep jobs checked by preflight; a larger sweep has its first MAX_JOBS checked


class TelemetrySection(BaseModel):
    """`telemetry:` — OpenTelemetry spans of the run."""

    model_config = ConfigDict(extra="forbid")
    otlp_endpoint: str | None = None
    headers: dict[str, str] = {}
    timeout_s: float = Field(default=30.0, gt=0)


class MlflowSection(BaseModel):
    """`mlflow:` — where a run is also logged to MLflow (tracking_uri null: not logged)."""

    model_config = ConfigDict(extra="forbid")
    tracking_uri: str | None = None
    experiment: str = "textgrad-core"


class ConcurrencySection(BaseModel):
    """`concurrency:` — a bound on LLM calls in flight over every endpoint of the run (each endpoint has its own)."""

    model_config = ConfigDict(extra="forbid")
    max_in_flight: int | None = Field(default=None, ge=1)


# The top-level keys of a run's config; `experiment` is a Hydra group selection and never a key of its own.
TOP_LEVEL = ("engine", "engines", "task", "credit", "optimizer", "search", "trainer", "budget", "pricing", "run_dir",
             "runs_root", "resume", "telemetry", "mlflow", "concurrency", "target", "experiment")
REQUIRED = ("engine", "task", "credit", "optimizer", "trainer")
GROUPS = ("engine", "task", "credit", "optimizer", "search")


def validate_config(cfg: Mapping[str, Any]) -> None:
    """Raise one ConfigError (a one-line message) unless the resolved config `cfg` can start a run."""
    problems = config_problems(cfg)
    if problems:
        raise ConfigError(one_line(problems))


def one_line(problems: list[str]) -> str:
    """Problems joined into one line: the first ones in full, then how many more."""
    shown = [" ".join(p.split()) for p in problems[:3]]
    more = f"; and {len(problems) - 3} more" if len(problems) > 3 else ""
    return "; ".join(shown) + more


def config_problems(cfg: Mapping[str, Any], memo: dict[str, list[str]] | None = None) -> list[str]:
    """Every problem of a resolved config, each one line; empty when the config can start a run.

    `memo` keeps the problems of the task and of the credit/optimizer/search sections by their content, so the
    jobs of a sweep that share them build them once.
    """
    if not isinstance(cfg, Mapping):
        return [f"the config must be a mapping, not {type(cfg).__name__}"]
    problems = [unknown_key("", k, TOP_LEVEL) for k in cfg if k not in TOP_LEVEL and k != "hydra"]
    problems += [f"missing key {k}" + (f" (a config group: choose one with {k}=<option>)" if k in GROUPS else "")
                 for k in REQUIRED if k not in cfg]
    if problems:
        return problems
    problems += model_problems(TrainerConfig, cfg["trainer"], "trainer")
    if cfg.get("budget") is not None:
        problems += model_problems(BudgetConfig, cfg["budget"], "budget")
    problems += value_problems(dict[str, Price] | None, cfg.get("pricing"), "pricing")
    problems += _engine_problems(cfg)
    problems += _scalar_problems(cfg)
    for key, model in (("telemetry", TelemetrySection), ("mlflow", MlflowSection),
                       ("concurrency", ConcurrencySection), ("target", TargetSection)):
        if cfg.get(key) is not None:
            problems += model_problems(model, cfg[key], key)
    problems += _remembered(memo, ("task", cfg["task"]), lambda: _task_problems(cfg["task"]))
    methods = ("methods", cfg["credit"], cfg["optimizer"], cfg.get("search"))
    problems += _remembered(memo, methods, lambda: _method_problems(cfg))
    return problems


def _remembered(memo: dict[str, list[str]] | None, key: Any, problems: Any) -> list[str]:
    if memo is None:
        return problems()
    text = json.dumps(key, sort_keys=True, default=str)
    if text not in memo:
        memo[text] = problems()
    return memo[text]


def _engine_problems(cfg: Mapping[str, Any]) -> list[str]:
    problems = model_problems(EngineConfig, cfg["engine"], "engine")
    engines = cfg.get("engines")
    if engines is None or problems:
        return problems
    if not isinstance(engines, Mapping):
        return [f"engines={show(engines)}: must be a mapping of roles ({', '.join(ENGINE_ROLES)}) to engine settings"]
    for role, override in engines.items():
        if role not in ENGINE_ROLES:
            problems.append(unknown_key("engines", role, ENGINE_ROLES, what="role"))
        elif override is not None and not isinstance(override, Mapping):
            problems.append(f"engines.{role}={show(override)}: must be null (use `engine`) or a mapping of engine "
                            f"settings, e.g. engines.{role}.model=gpt-4o")
    if problems:
        return problems
    for role, merged in role_configs(cfg).items():
        if engines.get(role):
            problems += model_problems(EngineConfig, merged, f"engines.{role}")
    return problems


def _scalar_problems(cfg: Mapping[str, Any]) -> list[str]:
    problems = value_problems(str | None, cfg.get("run_dir"), "run_dir", strict=True)
    if "runs_root" in cfg:
        problems += value_problems(str, cfg["runs_root"], "runs_root", strict=True)
    resume = cfg.get("resume")
    if resume is not None:
        if not isinstance(resume, str) or not resume:
            problems.append(f"resume={show(resume)}: must be the path of a run directory to continue "
                            "(resume=runs/<run>)")
        elif not (Path(resume) / "checkpoint.json").is_file():
            what = "does not exist" if not Path(resume).exists() else "has no checkpoint.json"
            problems.append(f"resume={resume}: {what}; give the directory of a run to continue (resume=runs/<run>)")
    experiment = cfg.get("experiment")
    if experiment is not None:
        options = ", ".join(validate_hydra.group_options("experiment")) or "none (configs/experiment/ is empty)"
        problems.append(f"experiment={show(experiment)}: not an experiment config; choose from {options}")
    return problems


def _task_problems(section: Any) -> list[str]:
    if not isinstance(section, Mapping):
        return [f"task={show(section)}: must be a mapping with a name (task=<name>) or a _target_"]
    try:
        cls, options, _ = resolve_task(section)
    except ConfigError as exc:
        return [str(exc)]
    problems = signature_problems(cls, options, "task")
    return problems or _built("task", lambda: load_task(section))


def _method_problems(cfg: Mapping[str, Any]) -> list[str]:
    """Credit, optimizer and search: options against their constructors, then built together (they must fit)."""
    problems = []
    for kind in ("credit", "optimizer"):
        section = cfg[kind]
        if not isinstance(section, Mapping):
            problems.append(f"{kind}={show(section)}: must be a mapping with a name ({kind}=<name>) or a _target_")
            continue
        options = dict(section)
        target, name = options.pop("_target_", None), options.pop("name", None)
        try:
            cls = registry.resolve(kind, name=name, target=target)
        except ConfigError as exc:
            problems.append(str(exc))
            continue
        # `params` and `engine` bind an optimizer for a script's step(); the trainer passes its own, never a config.
        problems += signature_problems(cls, options, kind, skip=("params", "engine"))
    search = cfg.get("search")
    if search is not None and not isinstance(search, Mapping):
        problems.append(f"search={show(search)}: must be a mapping with a name (search=none, greedy, beam, pareto, gepa)")
    elif search:
        options = dict(search)
        name = options.pop("name", "none")
        if name not in (None, "none"):
            if name == "gepa":
                problems += signature_problems(GEPASearch, options, "search", skip=("optimizer",))
            elif name not in SELECTIONS:
                problems.append(f"search.name={show(name)}: must be one of none, {', '.join(SELECTIONS)}, gepa")
            else:
                problems += signature_problems(CandidateSearch, options, "search", skip=("optimizer", "selection"))
        elif options:
            problems += [unknown_key("search", k, [], what="option") + " (search=none takes no options)"
                         for k in options]
    if problems:
        return problems
    built: dict[str, Any] = {}
    problems = _built("credit", lambda: built.setdefault("credit", build_credit(cfg["credit"])))
    problems = problems or _built("optimizer", lambda: built.setdefault(
        "optimizer", build_optimizer(cfg["optimizer"], built["credit"])))
    return problems or _built("search", lambda: build_search(search, built["optimizer"]))


def _built(kind: str, build: Any) -> list[str]:
    """Problems of building one piece: its own ConfigError, or a constructor's ValueError/TypeError, as one line."""
    try:
        build()
    except ConfigError as exc:
        return [str(exc)]
    except (ValueError, TypeError) as exc:
        return [f"{kind}: {exc}"]
    return []


def data_problems(cfg: Mapping[str, Any], memo: dict[str, list[str]] | None = None) -> list[str]:
    """Problems of the task's data as configured: files readable, sizes within the data, splits non-empty, no leak."""
    return _remembered(memo, ("data", cfg["task"]), lambda: _built("task", lambda: load_task(cfg["task"]).checked_splits()))


def validate_run(cfg: Mapping[str, Any]) -> None:
    """`validate_config`, then the task's data: what preflight checks for each job."""
    problems = config_problems(cfg) or data_problems(cfg)
    if problems:
        raise ConfigError(one_line(problems))


def preflight(overrides: list[str], *, multirun: bool | None = None, config_dir: str | Path | None = None,
              config_name: str = "config", max_jobs: int = MAX_JOBS) -> None:
    """Check every job the command line would run, before Hydra starts; raise one ConfigError naming the fix.

    `overrides` are the command-line arguments (Hydra flags such as -m are recognized; with none given and
    `multirun` None, sweeps are expanded as if -m were given). Flags that only print (--help, --cfg, --info)
    skip the check.
    """
    plan = validate_hydra.plan(overrides, multirun=multirun, config_name=config_name)
    if plan is None:
        return
    memo: dict[str, list[str]] = {}
    with validate_hydra.Session(config_dir, plan.config_name) as session:
        jobs = session.jobs(plan)
        for number, job in enumerate(jobs[:max_jobs]):
            plain, absent = session.compose(job, plan)
            problems = config_problems(plain, memo)
            if not problems and absent:
                problems = [validate_hydra.absent_key(absent[0])]
            problems = problems or data_problems(plain, memo)
            if problems:
                where = f"job {number} ({' '.join(job) or 'no overrides'}): " if len(jobs) > 1 else ""
                raise ConfigError(where + one_line(problems))


__all__ = ["ConfigError", "MAX_JOBS", "config_problems", "data_problems", "one_line", "preflight", "validate_config",
           "validate_run"]
