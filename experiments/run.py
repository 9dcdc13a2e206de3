"""Run one experiment: `python -m experiments.run [hydra overrides]` (e.g. engine=openai task=bbh_object_counting)."""
from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Any

import hydra
from omegaconf import DictConfig, OmegaConf

from experiments.factory import build_credit, build_engines, build_optimizer, build_search, load_task, role_configs
from experiments.report import print_summary
from textgrad_core.errors import TextgradError
from textgrad_core.rundir import RunDir
from textgrad_core.trainer import Trainer, TrainerConfig


def run_experiment(cfg: DictConfig | dict[str, Any]) -> dict[str, Any]:
    """Build everything from a resolved config, train, and return the summary (also written to the run dir)."""
    plain = OmegaConf.to_container(cfg, resolve=True) if isinstance(cfg, DictConfig) else dict(cfg)
    task = load_task(plain["task"])
    splits = task.load_splits()
    credit = build_credit(plain["credit"])
    optimizer = build_optimizer(plain["optimizer"], credit)
    search = build_search(plain.get("search"), optimizer)
    providers = {c.get("provider") for c in role_configs(plain).values()}
    run = RunDir(Path(plain["run_dir"]), simulated=bool(providers & {"sim", "scripted"}))
    run.write_config(OmegaConf.to_yaml(OmegaConf.create(plain)))
    engines = build_engines(plain, task, splits, call_log=run.calls)
    trainer = Trainer(task, engines, credit, optimizer, TrainerConfig.model_validate(plain["trainer"]), run=run,
                      splits=splits, search=search)
    summary = asyncio.run(trainer.train())
    summary["run_dir"] = str(run.path)
    run.summary(summary)
    return summary


def plug_in_overrides(overrides: list[str]) -> list[str]:
    """`task._target_=pkg.Class` without a `task=` choice selects `task=custom`, so the default task's options stay out."""
    targets = [o for o in overrides if o.lstrip("+").startswith("task._target_=")]
    if not targets or any(o.startswith("task=") for o in overrides):
        return overrides
    # custom.yaml declares `_target_`, so a leading '+' (which Hydra refuses for an existing key) is dropped.
    return [o.lstrip("+") if o in targets else o for o in overrides] + ["task=custom"]


@hydra.main(config_path="../configs", config_name="config", version_base="1.3")
def main(cfg: DictConfig) -> None:
    try:
        summary = run_experiment(cfg)
    except TextgradError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
    print_summary(summary)


if __name__ == "__main__":
    sys.argv[1:] = plug_in_overrides(sys.argv[1:])
    main()
