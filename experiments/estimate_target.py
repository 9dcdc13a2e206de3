"""The `target:` block of a reproduction config (configs/experiment/repro/*.yaml): the published number it aims at.

A target is bookkeeping for people and reports: it never reaches an LLM and changes nothing in a run. A number that
could not be checked against the paper is written `unconfirmed`, never guessed.
"""
from __future__ import annotations

from typing import Any, Literal, Mapping

from pydantic import BaseModel, ConfigDict, Field

from textgrad_core.errors import ConfigError


class TargetSection(BaseModel):
    """`target:` — the published setting a config reproduces and the number it should reach."""

    model_config = ConfigDict(extra="forbid")
    paper: str                                          # authors, year, title, arXiv id
    table: str                                          # which table (or figure), row and column
    number: float | Literal["unconfirmed"]              # the published number, or `unconfirmed`
    metric: str = "test accuracy (%)"
    models: dict[str, str] = Field(default_factory=dict)  # role -> model, as in the paper
    split: str                                          # train / validation / test as in the paper
    batch_size: int = Field(ge=1)
    steps: int | None = Field(default=None, ge=0)       # optimization steps (null: bounded by a budget instead)
    protocol: str                                       # the task protocol whose scorer the number uses
    notes: str = ""                                     # what was confirmed where, and what was not


def parse_target(data: Any) -> TargetSection | None:
    """The target block of a composed config (None when there is none); one ConfigError naming the key otherwise."""
    if data is None:
        return None
    if not isinstance(data, Mapping):
        raise ConfigError(f"target must be a mapping with {', '.join(TargetSection.model_fields)}; got {data!r}")
    try:
        return TargetSection.model_validate(dict(data))
    except Exception as exc:  # pydantic's ValidationError: reported as one line
        errors = getattr(exc, "errors", lambda: [])()
        first = errors[0] if errors else {"loc": (), "msg": str(exc)}
        key = ".".join(str(p) for p in first.get("loc", ()))
        raise ConfigError(f"target.{key}: {first.get('msg')} (see experiments/estimate_target.py for the fields)") from exc


__all__ = ["TargetSection", "parse_target"]
