"""What a checkpoint holds and how it is put back: parameters with their histories, and the state of stateful parts.

A checkpoint is written atomically after every completed step (see `RunDir.checkpoint`), so a run killed at any
moment resumes from the last completed step with everything that step left behind.
"""
from __future__ import annotations

import base64
import pickle
from typing import Any

from textgrad_core.errors import ConfigError
from textgrad_core.variable import ParameterSet, ParameterVersion

FORMAT = 2


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


def object_state(obj: Any) -> dict[str, Any]:
    """The state of an optimizer or credit strategy: its own `state_dict()` if it has one, else its attributes."""
    if hasattr(obj, "state_dict") and hasattr(obj, "load_state_dict"):
        return {"state_dict": obj.state_dict()}
    try:
        return {"pickle": base64.b64encode(pickle.dumps(vars(obj))).decode("ascii")}
    except Exception as exc:  # an attribute that cannot be saved (a client, a lock)
        raise ConfigError(f"{type(obj).__name__} cannot be checkpointed ({exc}); give it state_dict() and "
                          "load_state_dict() methods") from exc


def restore_object(obj: Any, state: dict[str, Any]) -> None:
    """Undo `object_state`."""
    if "state_dict" in state:
        obj.load_state_dict(state["state_dict"])
    else:
        vars(obj).update(pickle.loads(base64.b64decode(state["pickle"])))
