"""What a checkpoint holds and how it is put back: parameters with their histories, and the state of stateful parts.

A checkpoint is written atomically after every completed step (see `RunDir.checkpoint`), so a run killed at any
moment resumes from the last completed step with everything that step left behind.

Everything in it is plain JSON, and loading one never runs code: an optimizer or credit strategy gives its state
with `state_dict()` (JSON) and takes it back with `load_state_dict(state)`. A plug-in without those methods is
saved by its attributes when every one of them is plain JSON (strings, numbers, booleans, None, and lists and
text-keyed dicts of those); one that holds anything else (an object, a tuple, a set) must implement the two methods,
and saving says so in one line. Checkpoints of format 2 and older held pickles; they are refused with one line,
never unpickled.
"""
from __future__ import annotations

import math
from typing import Any

from textgrad_core.errors import ConfigError
from textgrad_core.variable import ParameterSet, ParameterVersion

# 3: optimizer and credit state as JSON only (state_dict, or plain-JSON attributes); 2 and older could hold pickles.
FORMAT = 3

OLDER_VERSION = ("this checkpoint was written by an older version of textgrad-core (format {found}, which could "
                 "hold pickled state; this version reads format {format} only): rerun, or resume with an older version")

# Attributes the run supplies again on resume (the parameters are checkpointed on their own, engines are rebuilt
# from the config): never part of an object's saved state. ScriptStepping binds these for a script's step().
RUN_SUPPLIED = ("params", "engine")


def check_format(state: Any) -> None:
    """Refuse, in one line, a checkpoint this version cannot read (older, newer or not a checkpoint at all)."""
    if not isinstance(state, dict) or "format" not in state:
        raise ConfigError("checkpoint.json is not a textgrad-core checkpoint (no format field); resume from a run "
                          "directory this framework wrote, or start a new run")
    found = state["format"]
    if isinstance(found, bool) or not isinstance(found, int):
        raise ConfigError(f"checkpoint.json has format {found!r}, not a version number; start a new run")
    if found < FORMAT or any(isinstance(state.get(part), dict) and "pickle" in state[part]
                             for part in ("optimizer", "credit")):
        raise ConfigError(OLDER_VERSION.format(found=found, format=FORMAT))
    if found > FORMAT:
        raise ConfigError(f"this checkpoint was written by a newer version of textgrad-core (format {found}; this "
                          f"version reads format {FORMAT}): resume with that version")


def parameters_state(params: ParameterSet) -> dict[str, Any]:
    """Every parameter's value, version and full history."""
    return {p.id: {"value": p.value, "version": p.version, "history": [h.__dict__ for h in p.history]} for p in params}


def restore_parameters(params: ParameterSet, state: dict[str, Any]) -> None:
    """Put values and histories back; the parameters must be the ones the checkpoint was written for."""
    if set(state) != {p.id for p in params}:
        raise ConfigError(f"The checkpoint holds parameters {sorted(state)} but the task defines "
                          f"{sorted(p.id for p in params)}: resume with the task and options the run was started with.")
    for p in params:
        saved = state[p.id]
        p.history = [ParameterVersion(**h) for h in saved["history"]]
        p.value = saved["value"]


def json_problem(value: Any, where: str = "state") -> str | None:
    """Where `value` stops being plain JSON that loads back equal (a tuple, a non-text key, NaN, an object), or None."""
    if value is None or isinstance(value, (str, bool, int)):
        return None
    if isinstance(value, float):
        return None if math.isfinite(value) else f"{where} is {value} (JSON has no NaN or infinity)"
    if isinstance(value, list):
        return next((p for i, item in enumerate(value) if (p := json_problem(item, f"{where}[{i}]"))), None)
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                return f"{where} has the key {key!r} ({type(key).__name__}; JSON keys are text)"
            if problem := json_problem(item, f"{where}[{key!r}]"):
                return problem
        return None
    return f"{where} is a {type(value).__name__}"


def _attributes(obj: Any) -> dict[str, Any]:
    """The attributes that make up a plug-in's state (what the run supplies again left out), in name order."""
    return {k: v for k, v in sorted(vars(obj).items()) if k not in RUN_SUPPLIED}


def object_state(obj: Any) -> dict[str, Any]:
    """The JSON state of an optimizer or credit strategy: its `state_dict()`, else its attributes.

    ConfigError (one line naming the fix) when the state is not plain JSON, or when an object without
    `state_dict()` keeps anything but plain JSON in its attributes.
    """
    name = type(obj).__name__
    if hasattr(obj, "state_dict") and hasattr(obj, "load_state_dict"):
        state = obj.state_dict()
        if problem := json_problem(state, f"{name}.state_dict()"):
            raise ConfigError(f"{problem}: a checkpoint holds plain JSON only; make {name}.state_dict() return dicts "
                              "with text keys, lists, strings, finite numbers, booleans and None")
        return {"state_dict": state}
    attributes = _attributes(obj) if hasattr(obj, "__dict__") else {}
    held = sorted(k for k, v in attributes.items() if json_problem(v))
    if held:
        raise ConfigError(f"{name} cannot be checkpointed: {json_problem(attributes[held[0]], held[0])}, not plain "
                          f"JSON (attributes: {', '.join(held)}); implement {name}.state_dict() (returning JSON) and "
                          f"{name}.load_state_dict(state) (see textgrad_core/checkpoint.py)")
    return {"attributes": attributes}


def restore_object(obj: Any, state: Any) -> None:
    """Undo `object_state`; a saved state that is not what this version writes is refused, and never executed."""
    name = type(obj).__name__
    if isinstance(state, dict) and "pickle" in state:
        raise ConfigError(OLDER_VERSION.format(found="2 or older", format=FORMAT))
    if not isinstance(state, dict) or len(state) != 1 or not ({"state_dict", "attributes"} & set(state)):
        raise ConfigError(f"the checkpoint's state for {name} is malformed; resume from an intact run directory, "
                          "or start a new run")
    if "state_dict" in state:
        if not (hasattr(obj, "state_dict") and hasattr(obj, "load_state_dict")):
            raise ConfigError(f"the checkpoint holds a state_dict for {name}, which has no load_state_dict(); resume "
                              "with the optimizer and credit strategy the run was started with")
        obj.load_state_dict(state["state_dict"])
        return
    attributes = state["attributes"]
    mine = _attributes(obj) if hasattr(obj, "__dict__") else {}
    if not isinstance(attributes, dict) or set(attributes) != set(mine) or \
            any(json_problem(v) for v in attributes.values()):
        raise ConfigError(f"the checkpoint's attributes for {name} are not the ones it has ({', '.join(mine) or 'none'}); "
                          "resume with the optimizer and credit strategy the run was started with")
    for key, value in attributes.items():
        setattr(obj, key, value)


def malformed(name: str, what: str) -> ConfigError:
    """The one-line error for a state_dict that does not have the shape `load_state_dict` expects."""
    return ConfigError(f"the checkpoint's state for {name} is malformed ({what}); resume from an intact run "
                       "directory, or start a new run")


def expect_empty_state(obj: Any, state: Any) -> None:
    """`load_state_dict` of a part with nothing to save (its options come from the config): only {} is accepted."""
    if state != {}:
        raise malformed(type(obj).__name__, "it keeps no state, but the checkpoint holds some")
