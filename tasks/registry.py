"""Find a task by name (`task.name=gsm8k`) or by import path (`task._target_=my_pkg.MyTask`)."""
from __future__ import annotations

import difflib
import importlib
from typing import Any, Mapping

from textgrad_core.errors import ConfigError
from textgrad_core.task import Task

# name -> "module:Class"; imported on demand so a broken optional task never breaks the others.
TASKS: dict[str, str] = {
    "bbh_object_counting": "tasks.bbh_object_counting:ObjectCountingTask",
    "bbh_word_sorting": "tasks.bbh_word_sorting:WordSortingTask",
    "bbh": "tasks.bbh:BBHTask",
    "humaneval": "tasks.humaneval:HumanEvalTask",
    "tool_use": "tasks.tool_use:ToolUseTask",
    "battleship": "tasks.battleship:BattleshipTask",
    "gsm8k": "tasks.gsm8k:GSM8KTask",
    "layered": "tasks.layered:LayeredTask",
    "hotpotqa_rag": "tasks.hotpotqa_rag:HotpotQARAGTask",
    "gsm8k_sc": "tasks.gsm8k_sc:GSM8KSelfConsistencyTask",
    "hotpotqa_multihop": "tasks.hotpotqa_multihop:HotpotQAMultiHopTask",
    "humaneval_sf": "tasks.humaneval_sf:HumanEvalSampleFilterTask",
    "math_sympy": "tasks.math_sympy:MathSympyTask",
    "gsm8k_agent": "tasks.gsm8k_agent:GSM8KAgentTask",
    "cascade": "tasks.cascade:CascadeTask",
    "gsm8k_mc": "tasks.gsm8k_mc:GSM8KMedpromptTask",
}


def register(name: str, target: str) -> None:
    """Make a task class (given as 'module:Class') available by name."""
    TASKS[name] = target


def _import(target: str) -> Any:
    module_name, sep, attr = target.partition(":")
    if not sep:
        module_name, _, attr = target.rpartition(".")
    try:
        return getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as exc:
        raise ConfigError(f"Cannot import task '{target}': {exc}. Use 'package.module.ClassName' and make sure "
                          "the package is importable (installed, or on PYTHONPATH).") from exc


def resolve_task(config: Mapping[str, Any] | str) -> tuple[type, dict[str, Any], str]:
    """The task class a config names, the options for its constructor, and its import target."""
    cfg = {"name": config} if isinstance(config, str) else dict(config)
    target = cfg.pop("_target_", None)
    name = cfg.pop("name", None)
    if target is None:
        if name is None:
            raise ConfigError(f"No task given: choose one with task=<name> ({', '.join(sorted(TASKS))}) or plug in "
                              "your own with task._target_=your_package.YourTask.")
        if name not in TASKS:
            close = difflib.get_close_matches(str(name), list(TASKS), n=1)
            guess = f" — did you mean {close[0]}?" if close else "."
            raise ConfigError(f"Unknown task '{name}'{guess} Known tasks: {', '.join(sorted(TASKS))}. "
                              "A task of your own plugs in with task._target_=your_package.YourTask.")
        target = TASKS[name]
    cls = _import(target)
    if not isinstance(cls, type):
        raise ConfigError(f"'{target}' is not a class: point task._target_ at a subclass of textgrad_core.task.Task.")
    if getattr(cls, "__abstractmethods__", None):
        raise ConfigError(f"'{target}' is not a complete task: define {sorted(cls.__abstractmethods__)} "
                          "(see textgrad_core.task.Task).")
    if issubclass(cls, Task) and cls.metric is Task.metric and cls.loss is Task.loss:
        raise ConfigError(f"'{target}' cannot score its outputs: define metric() (or loss()) "
                          "(see textgrad_core.task.Task).")
    return cls, cfg, target


def load_task(config: Mapping[str, Any] | str) -> Task:
    """Build a task from its config: `name` (plus options) or `_target_` (plus options; `name` is then a label)."""
    cls, cfg, target = resolve_task(config)
    name = config if isinstance(config, str) else config.get("name")
    try:
        task = cls(**cfg)
    except TypeError as exc:
        hint = (f" They may come from the task group '{name}': select task=custom for a task given by _target_."
                if name in TASKS and TASKS[name] != target else "")
        raise ConfigError(f"Task '{target}' does not accept these options {sorted(cfg)}: {exc}.{hint}") from exc
    required = ("load_splits", "initial_parameters", "forward", "metric")
    missing = [m for m in required if not callable(getattr(task, m, None))]
    if missing:
        raise ConfigError(f"'{target}' is not a task: it lacks {missing}. Subclass textgrad_core.task.Task.")
    return task
