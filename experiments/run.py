"""Run one experiment: `python -m experiments.run [hydra overrides]` (e.g. engine=openai task=bbh_object_counting).

`-m` sweeps any axis; `resume=<run dir>` continues a killed or stopped run from its last completed step.
Everything is validated before any run directory exists or any call is made; a user's mistake is one line on
stderr and exit code 2.
"""
from __future__ import annotations

import logging
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator

from experiments import sweep as sweeps
from textgrad_core.errors import ConfigError, TextgradError

if TYPE_CHECKING:
    from omegaconf import DictConfig

    from experiments.progress import ProgressReporter
    from textgrad_core.rundir import RunDir
    from textgrad_core.trainer import Trainer, TrainerConfig

# Hydra, OmegaConf, the trainer and the engines are imported where they are used, not here: the command line
# reports a config error before any of them is loaded (see experiments.cli_preflight and cli() below).


def _register_resolvers() -> None:
    """`${sweep_dir:...}` in configs/config.yaml: one sweep directory per launch."""
    from omegaconf import OmegaConf

    # use_cache: Hydra copies the launching process's value into every job's config (remote workers included).
    OmegaConf.register_new_resolver("sweep_dir", sweeps.sweep_dir, replace=True, use_cache=True)


def __getattr__(name: str) -> Any:
    # `from experiments.run import plug_in_overrides` keeps working without importing the factory up front.
    if name == "plug_in_overrides":
        from experiments.factory import plug_in_overrides

        return plug_in_overrides
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def run_experiment(cfg: DictConfig | dict[str, Any], job: dict[str, Any] | None = None,
                   overrides: list[str] | None = None) -> dict[str, Any]:
    """Validate, build everything from a resolved config, train, and return the summary (also in the run dir).

    `job` describes a sweep job ({"num", "sweep_dir", "overrides"}); None for a single run, whose command-line
    `overrides` are recorded in run.json.
    """
    from omegaconf import DictConfig, OmegaConf

    from experiments.factory import build_credit, build_engines, build_optimizer, build_search, load_task, role_configs
    from experiments.publish import publish_run
    from textgrad_core.trainer import Trainer, TrainerConfig

    _register_resolvers()
    plain = OmegaConf.to_container(cfg, resolve=True) if isinstance(cfg, DictConfig) else dict(cfg)
    resume = plain.get("resume")
    if resume:
        plain = _saved_config(Path(resume), plain, overrides or [])
    _validate(plain)
    task = load_task(plain["task"])
    splits = task.checked_splits()
    credit = build_credit(plain["credit"])
    optimizer = build_optimizer(plain["optimizer"], credit)
    search = build_search(plain.get("search"), optimizer)
    trainer_cfg = TrainerConfig.model_validate(plain["trainer"])
    simulated = bool({c.get("provider") for c in role_configs(plain).values()} & {"sim", "scripted"})
    run = _run_dir(plain, simulated, job, resume, overrides or [])
    try:
        engines = build_engines(plain, task, splits, call_log=run.calls, events=run.events)
    except TextgradError:
        if not resume:
            _unclaim(run)
        raise
    if not resume:
        run.write_config(OmegaConf.to_yaml(OmegaConf.create(plain)))
    progress = _progress(trainer_cfg, job, simulated, engines)
    trainer = Trainer(task, engines, credit, optimizer, trainer_cfg, run=run, splits=splits, search=search,
                      on_step=progress.on_step if progress else None, on_eval=progress.on_eval if progress else None)
    if resume:
        state = run.read_checkpoint()
        run.rewind(state.get("logs", {}))
        after = run.calls_after(state.get("logs", {}).get("calls", 0))
        trainer.load_state(state, after)
        restored = engines.backfill_cache(after)
        run.events.write({"kind": "resumed", "from_step": trainer.completed_steps, "calls_after_checkpoint": len(after),
                          "cache_entries_restored": restored})
    if job:
        sweeps.record_job(job["sweep_dir"], job["num"], overrides=job["overrides"], status="running",
                          run_dir=str(run.path))
    with _run_log(run.path / "run.log"):
        try:
            import asyncio

            summary = asyncio.run(_train(trainer))
        finally:
            if progress:
                progress.close()
            publish_run(run.path, plain)  # spans.jsonl always; OTLP / MLflow when configured; never raises
            if job:
                done = _read_summary(run)
                sweeps.record_job(job["sweep_dir"], job["num"], **sweeps.job_entry(done))
    summary["run_dir"] = str(run.path)
    return summary


def _progress(cfg: TrainerConfig, job: dict[str, Any] | None, simulated: bool, engines: Any) -> ProgressReporter | None:
    """A line per step (prefixed with the job in a sweep) and a bar for long evaluations; none with progress=false."""
    from experiments.progress import ProgressReporter

    if not cfg.progress:
        return None
    reporter = ProgressReporter(job=job["num"] if job else None, max_steps=cfg.max_steps,
                                label="SIMULATION" if simulated else None)
    ledger = engines.ledger
    step = reporter.on_step
    reporter.on_step = lambda record: step(record, ledger.total().cost_usd)  # type: ignore[method-assign]
    return reporter


async def _train(trainer: Trainer) -> dict[str, Any]:
    """Train; SIGTERM (a cluster's preemption, `kill`) stops the run like Ctrl-C: summary written, resumable."""
    import asyncio
    import signal

    loop, task = asyncio.get_running_loop(), asyncio.current_task()
    try:
        loop.add_signal_handler(signal.SIGTERM, task.cancel)
    except (NotImplementedError, RuntimeError, ValueError):  # not the main thread (a launcher's worker)
        pass
    return await trainer.train()


def _validate(plain: dict[str, Any]) -> None:
    from experiments.validate import validate_config  # imported here: the CLI has already validated via preflight

    validate_config(plain)


def _saved_config(path: Path, given: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """The resolved config a run was started with (its config.yaml), with `resume` pointing at it.

    Only the budget may change on resume (a run stopped by its budget goes on with a larger one): anything else
    would make the resumed run a different experiment.
    """
    from omegaconf import OmegaConf

    file = path / "config.yaml"
    if not file.is_file() or not (path / "checkpoint.json").is_file():
        raise ConfigError(f"resume={path}: not a run directory with a checkpoint (config.yaml and checkpoint.json); "
                          "give the directory of a run that completed its initial evaluation")
    keys = [o.lstrip("+~").split("=", 1)[0] for o in overrides]
    other = [k for k in keys if k != "resume" and not k.startswith("budget.")]
    if other:
        raise ConfigError(f"resume={path} continues the run with its own config; only budget.* may change "
                          f"(got {', '.join(other)}): start a new run to change anything else")
    plain = OmegaConf.to_container(OmegaConf.load(file), resolve=True)
    if any(k.startswith("budget.") for k in keys):
        plain["budget"] = given.get("budget", plain.get("budget"))
    plain["resume"] = str(path)
    return plain


def _run_dir(plain: dict[str, Any], simulated: bool, job: dict[str, Any] | None, resume: str | None,
             overrides: list[str]) -> RunDir:
    from textgrad_core.rundir import RunDir

    if resume:
        return RunDir(resume, simulated, resume=True)
    info = {"job": job["num"] if job else None, "sweep_dir": job["sweep_dir"] if job else None,
            "overrides": job["overrides"] if job else overrides}
    if job:  # a job's directory name repeats across sweeps; its id does not
        info["run_id"] = f"{Path(job['sweep_dir']).name}/{job['num']:03d}"
    parts = (plain["task"].get("name") or "task", plain["credit"].get("name"), plain["optimizer"].get("name"))
    if plain.get("run_dir"):
        return RunDir(plain["run_dir"], simulated, info=info)
    if job:
        return RunDir(Path(job["sweep_dir"]) / "_".join([f"{job['num']:03d}", *map(str, parts)]), simulated, info=info)
    return RunDir.create(plain.get("runs_root") or "runs", *map(str, parts), simulated=simulated, info=info)


def _unclaim(run: RunDir) -> None:
    """Remove a directory claimed for a run that could not start, so nothing looks like a real run."""
    for name in ("run.json", "config.yaml"):
        (run.path / name).unlink(missing_ok=True)
    try:
        run.path.rmdir()
    except OSError:
        pass  # the user's own directory with other files in it: left as it was


def _read_summary(run: RunDir) -> dict[str, Any]:
    try:
        return run.read_summary()
    except (OSError, ValueError):
        return {"status": "failed", "stop_reason": "the job ended without a summary"}


@contextmanager
def _run_log(path: Path) -> Iterator[None]:
    """Python logging of the run goes to run.log (HTTP client detail included); the console shows only warnings
    and the progress bar."""
    from textgrad_core.engines.http_logging import route_http_logs, unroute_http_logs

    root = logging.getLogger()
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.setLevel(logging.INFO)
    level, console = root.level, [(h, h.level) for h in root.handlers]
    for h, lvl in console:
        h.setLevel(max(lvl, logging.WARNING))
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    route_http_logs(handler)
    try:
        yield
    finally:
        unroute_http_logs(handler)
        root.removeHandler(handler)
        handler.close()
        root.setLevel(level)
        for h, lvl in console:
            h.setLevel(lvl)


def _job() -> tuple[dict[str, Any] | None, list[str]]:
    """This job's place in a sweep (-m; None for a single run) and the command-line overrides."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    if not HydraConfig.initialized():
        return None, []
    hc = HydraConfig.get()
    overrides = list(hc.overrides.task)
    if hc.mode != RunMode.MULTIRUN:
        return None, overrides
    return {"num": int(hc.job.num), "sweep_dir": str(hc.sweep.dir), "overrides": overrides}, overrides


def main() -> None:
    """Hydra's entry point: compose the config from sys.argv and run the job (or every job of a sweep)."""
    import hydra

    _register_resolvers()
    hydra.main(config_path="../configs", config_name="config", version_base="1.3")(_hydra_job)()


def _hydra_job(cfg: DictConfig) -> None:
    """One job, as Hydra (or a launcher's worker) calls it."""
    job, overrides = _job()
    try:
        summary = run_experiment(cfg, job, overrides)
    except TextgradError as exc:
        print(f"error: {exc}", file=sys.stderr)
        if job is None:
            sys.exit(2)
        sweeps.record_job(job["sweep_dir"], job["num"], overrides=job["overrides"], status="invalid", error=str(exc))
        return
    if summary.get("status") == "failed":  # e.g. a replay miss: the summary records it, the user gets one line
        print(f"error: {summary.get('error')}", file=sys.stderr)
        if job is None:
            sys.exit(2)
    elif job is None:
        from experiments.report import print_summary

        print_summary(summary)
    else:  # a sweep prints one line per job (and `python -m experiments.progress <sweep dir>` lists them all)
        print(f"[job {job['num']:03d}] {summary.get('status')}: val {summary['val']['initial']} -> "
              f"{summary['val']['final']}, test {summary['test']['final']}  {summary.get('run_dir')}")


def cli(argv: list[str]) -> int:
    """The command line: validate every job's config first, then hand over to Hydra; exit 0 only when every run
    (every job of a sweep, whichever launcher ran it) completed."""
    from experiments.cli_preflight import group_choice_problem

    problem = group_choice_problem(argv)  # before Hydra, pydantic or an engine is imported: one line at once
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        return 2
    from experiments.factory import plug_in_overrides

    argv = plug_in_overrides(argv)
    sweep = sweeps.sweep_id()  # made once here, inherited by the jobs of a parallel launcher
    _register_resolvers()
    try:
        from experiments.validate import preflight

        preflight(argv, multirun=any(a in ("-m", "--multirun") for a in argv))
    except TextgradError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    import asyncio

    sys.argv[1:] = argv
    try:
        main()
    except (KeyboardInterrupt, asyncio.CancelledError):
        print("interrupted: the summary says so (status stopped); continue with resume=<run dir>", file=sys.stderr)
        return 130
    if any(a in ("-m", "--multirun") for a in argv):
        index = sweeps.find_index(sweep)
        statuses = [j.get("status") for j in index["jobs"]] if index else []
        if not statuses or any(st != "completed" for st in statuses):
            print(f"sweep: {statuses.count('completed')} of {len(statuses)} jobs completed", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(cli(sys.argv[1:]))
