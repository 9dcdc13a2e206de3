"""Hydra's side of preflight: read the command line, expand a sweep into its jobs, compose each job's config.

The command line is parsed with Hydra's own OverridesParser and a sweep is expanded as Hydra's BasicSweeper does
(command-line values after an experiment's `hydra.sweeper.params`), so the jobs checked are the jobs that run.
Each distinct choice of config groups is composed once with Hydra's compose machinery; a job's value overrides are
then applied to a copy with Hydra's own override code. Composition errors become one line naming the key and the fix.
"""
from __future__ import annotations

import copy
import itertools
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from textgrad_core.errors import ConfigError

CONFIG_DIR = Path(__file__).resolve().parents[1] / "configs"
GRAMMAR = "https://hydra.cc/docs/advanced/override_grammar/basic/"

PRINT_ONLY = {"--help", "-h", "--hydra-help", "--info", "-i", "--cfg", "-c", "--shell-completion", "-sc", "--version"}
WITH_VALUE = {"--config-name", "-cn", "--config-path", "-cp", "--config-dir", "-cd", "--package", "-p",
              "--experimental-rerun"}
MULTIRUN = {"-m", "--multirun"}


@dataclass
class Plan:
    """What the command line asks for: its overrides, whether it is a sweep (None: unknown) and the config name."""

    overrides: list[str]
    multirun: bool | None
    config_name: str


def plan(argv: list[str], multirun: bool | None = None, config_name: str = "config") -> Plan | None:
    """The overrides and flags of a command line; None when Hydra would only print (--help, --cfg) or the config
    comes from another place (--config-path, --config-dir), which preflight leaves to Hydra."""
    overrides: list[str] = []
    args = iter(argv)
    for arg in args:
        if not arg.startswith("-"):
            overrides.append(arg)
            continue
        flag, has_value, value = arg.partition("=")
        if flag in PRINT_ONLY:
            return None
        if flag in MULTIRUN:
            multirun = True
        elif flag in WITH_VALUE:
            value = value if has_value else next(args, "")
            if flag in ("--config-name", "-cn"):
                config_name = value
            elif flag not in ("--package", "-p"):
                return None
        else:
            return None  # a flag of Hydra's this check does not know: Hydra reports it
    return Plan(overrides, multirun, config_name)


def group_options(group: str, config_dir: str | Path | None = None) -> list[str]:
    """The options of a config group (the YAML files of configs/<group>/), sorted."""
    directory = Path(config_dir or CONFIG_DIR) / group
    return sorted(p.stem for p in directory.glob("*.yaml"))


def absent_key(override: Any) -> str:
    """The problem line of a valid key that Hydra refuses without '+' because the composed config lacks it."""
    line = override.input_line.lstrip("+")
    return f"{override.key_or_group} is not in the config: add it with +{line}"


class Session:
    """An initialized Hydra over the config directory, composing jobs (each group choice once)."""

    def __init__(self, config_dir: str | Path | None = None, config_name: str = "config"):
        self.config_dir = Path(config_dir or CONFIG_DIR).resolve()
        self.config_name = config_name
        self._bases: dict[tuple[str, ...], Any] = {}
        self._trims: dict[int, Any] = {}

    def __enter__(self) -> "Session":
        from hydra import initialize_config_dir
        from hydra.core.global_hydra import GlobalHydra
        from hydra.core.override_parser.overrides_parser import OverridesParser

        self._context = initialize_config_dir(config_dir=str(self.config_dir), version_base="1.3")
        self._context.__enter__()
        self.hydra = GlobalHydra.instance().hydra
        self.parser = OverridesParser.create(config_loader=self.hydra.config_loader)
        return self

    def __exit__(self, *exc: Any) -> None:
        self._context.__exit__(*exc)

    # ---- the jobs ------------------------------------------------------------------------------------------------
    def parse(self, overrides: list[str]) -> list[Any]:
        """Hydra's parse of override strings; a syntax error is one ConfigError."""
        from hydra.errors import HydraException

        try:
            return self.parser.parse_overrides(overrides)
        except HydraException as exc:
            raise self.explain(exc) from None

    def jobs(self, plan: Plan) -> list[list[str]]:
        """The override list of every job the command line runs (one job unless it sweeps)."""
        parsed = self.parse(plan.overrides)
        sweeps = [o for o in parsed if o.is_sweep_override()]
        if sweeps and plan.multirun is False:
            raise ConfigError(_sweep_needs_multirun(sweeps[0].input_line))
        hydra_lines = [o.input_line for o in parsed if o.is_hydra_override()]
        swept_hydra = [o.input_line for o in sweeps if o.is_hydra_override()]
        if swept_hydra:
            raise ConfigError(f"{swept_hydra[0]}: Hydra's own settings cannot be swept; give one value")
        task = [o for o in parsed if not o.is_hydra_override()]
        jobs = _split(task)
        if plan.multirun is not False:
            params = self._sweeper_params(jobs[0] + hydra_lines)
            if params:
                jobs = _split(self.parse([f"{k}={v}" for k, v in params.items()]) + task)
        return [job + hydra_lines for job in jobs]

    def _sweeper_params(self, job: list[str]) -> dict[str, str]:
        """`hydra.sweeper.params` of the primary config (an experiment's own sweep), when the sweeper is Hydra's basic one."""
        from omegaconf import OmegaConf

        base, _ = self._base(self.parse(job))
        sweeper = base.hydra.get("sweeper") or {}
        if not str(sweeper.get("_target_", "")).endswith("BasicSweeper"):
            return {}
        params = sweeper.get("params")
        if not params:
            return {}
        return {str(k): str(v) for k, v in OmegaConf.to_container(params, resolve=False).items()}

    # ---- one job -------------------------------------------------------------------------------------------------
    def compose(self, job: list[str], plan: Plan | None = None) -> tuple[dict[str, Any], list[Any]]:
        """The resolved config of one job (without `hydra`), and the overrides Hydra would refuse for lack of a '+'."""
        from hydra._internal.config_loader_impl import ConfigLoaderImpl

        base, values = self._base(self.parse(job))
        cfg = copy.deepcopy(self._trimmed(base))
        absent = []
        for override in values:
            try:
                ConfigLoaderImpl._apply_overrides_to_config([override], cfg)
            except Exception as exc:  # noqa: BLE001  (Hydra's and OmegaConf's errors, each explained below)
                if _absent_key(exc) is None:
                    raise self.explain(exc) from None
                # Add it anyway (as '++' would) so the whole config is checked and the message can say more.
                forced = self.parse(["++" + override.input_line.lstrip("+")])
                try:
                    ConfigLoaderImpl._apply_overrides_to_config(forced, cfg)
                except Exception as again:  # noqa: BLE001
                    raise self.explain(again) from None
                absent.append(override)
        return _plain(cfg, base), absent

    def _trimmed(self, base: Any) -> Any:
        """The composed config without its (large) `hydra` node, made once per base: what each job copies."""
        from omegaconf import open_dict

        key = id(base)
        if key not in self._trims:
            trimmed = copy.deepcopy(base)
            with open_dict(trimmed):
                del trimmed["hydra"]
            self._trims[key] = trimmed
        return self._trims[key]

    def _base(self, parsed: list[Any]) -> tuple[Any, list[Any]]:
        """The config composed from a job's group choices (cached), and the job's value overrides to apply to it."""
        from hydra.types import RunMode

        repository = self.hydra.config_loader.repository
        groups, values = [], []
        for o in parsed:
            # As Hydra's defaults list decides: a group choice names an existing group and is not a mapping.
            is_group = repository.group_exists(o.key_or_group) and not isinstance(o.value(), dict)
            (groups if o.is_hydra_override() or is_group else values).append(o)
        key = tuple(o.input_line for o in groups)
        if key not in self._bases:
            try:
                self._bases[key] = self.hydra.compose_config(self.config_name, list(key), run_mode=RunMode.RUN,
                                                             with_log_configuration=False)
            except Exception as exc:  # noqa: BLE001  (Hydra's errors, explained)
                raise self.explain(exc) from None
        return self._bases[key], values

    # ---- messages ------------------------------------------------------------------------------------------------
    def explain(self, exc: BaseException) -> ConfigError:
        """One ConfigError line for a Hydra composition or parse error, naming the key and the fix."""
        from hydra.errors import MissingConfigException, OverrideParseException

        text = str(exc).strip()
        first = text.splitlines()[0] if text else type(exc).__name__
        if isinstance(exc, OverrideParseException):
            return ConfigError(f"cannot read an override: {first} (the override grammar: {GRAMMAR})")
        if isinstance(exc, MissingConfigException) and exc.missing_cfg_file and "/" in exc.missing_cfg_file:
            group, option = exc.missing_cfg_file.rsplit("/", 1)
            options = list(exc.options or []) or group_options(group, self.config_dir)
            if options:
                return ConfigError(f"{group}={option}: no such option; choose from {', '.join(options)}")
            return ConfigError(f"{group}={option}: there is no config group {group}")
        found = re.search(r"Could not override '([^']+)'\. No match in the defaults list", text)
        if found:
            key = found.group(1)
            chosen = re.search(r"use \+[^=\s]+=(\S*)", text)
            option = chosen.group(1) if chosen else "<option>"
            options = group_options(key, self.config_dir)
            if chosen and options and option not in options:
                return ConfigError(f"{key}={option}: no such option; choose from {', '.join(options)}")
            return ConfigError(f"{key} is not in the defaults list of {self.config_name}.yaml: select it with "
                               f"+{key}={option} (options: {', '.join(options) or 'none'})")
        found = re.search(r"Multiple values for (\S+?)\. To override a value use 'override \S+: (\S+)'", text)
        if found:
            key, option = found.groups()
            return ConfigError(f"{key} is already chosen in the defaults list: drop the '+' ({key}={option})")
        found = re.search(r"An item is already at '([^']+)'", text)
        if found:
            return ConfigError(f"{found.group(1)} is already in the config: set it without '+' "
                               f"({found.group(1)}=<value>)")
        found = re.search(r"Ambiguous value for argument '([^']+)'|Sweep parameters '([^']+)' requires", text)
        if found:
            return ConfigError(_sweep_needs_multirun(found.group(1) or found.group(2)))
        key = _absent_key(exc)
        if key:
            return ConfigError(f"unknown key {key}")
        cause = exc.__cause__ or exc.__context__
        detail = str(cause).strip().splitlines()[0] if cause and str(cause).strip() else ""
        return ConfigError(f"{first}" + (f" ({detail})" if detail and detail not in first else ""))


def _split(overrides: list[Any]) -> list[list[str]]:
    """BasicSweeper's expansion: one job per combination of the swept values, a key given twice taking its last
    value in its first place; an override that does not sweep is kept as the user wrote it."""
    lists: dict[str, list[str]] = {}
    for o in overrides:
        key = o.get_key_element()
        if not o.is_sweep_override():
            lists[key] = [o.input_line]
        elif o.is_discrete_sweep():
            lists[key] = [f"{key}={value}" for value in o.sweep_string_iterator()]
        # else: interval() and the like, for an optimizing sweeper: the config's value is checked instead
    return [list(job) for job in itertools.product(*lists.values())]


def _absent_key(exc: BaseException) -> str | None:
    """The key of a "Could not override 'x'" error whose cause is that x is not in the (struct) config."""
    found = re.search(r"Could not override '([^']+)'", str(exc))
    cause = exc.__cause__
    if found and cause is not None and "not in struct" in str(cause):
        return found.group(1)
    return None


def _sweep_needs_multirun(line: str) -> str:
    return (f"{line} is a sweep: add -m (--multirun) to run one job per value (a list is key=[a,b]; a string with "
            "commas is quoted: key='a,b')")


def _plain(cfg: Any, base: Any) -> dict[str, Any]:
    """The resolved job config as plain containers, without the `hydra` node (as the run receives it)."""
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import Container, OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    HydraConfig.instance().set_config(base)  # so ${hydra:...} interpolations resolve as in a run
    out: dict[str, Any] = {}
    for key in cfg:
        if key == "hydra":
            continue
        try:
            node = cfg[key]
            out[str(key)] = OmegaConf.to_container(node, resolve=True) if isinstance(node, Container) else node
        except OmegaConfBaseException as exc:
            first = str(exc).strip().splitlines()[0]
            raise ConfigError(f"{key}: cannot resolve the config ({first})") from None
    return out


__all__ = ["CONFIG_DIR", "Plan", "Session", "absent_key", "group_options", "plan"]
