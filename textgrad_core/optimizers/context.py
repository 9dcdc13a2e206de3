"""What an optimizer's prompt takes from a credit result beyond its feedback text: each example's context (input and
the system's output) and the trace's parameter blocks, so that no value is sent twice in one prompt.

Credit strategies publish both in `CreditResult.details`:
- `example_context`: {example id: {"input": text, "output": text}};
- `parameter_blocks`: {parameter id: the exact text of that parameter's block in `trace`}.
Merged results (several backward() calls) and adaptive credit nest details; both are found at any depth.
"""
from __future__ import annotations

from typing import Any

from textgrad_core import prompts
from textgrad_core.credit import CreditResult
from textgrad_core.variable import Parameter

_MAX_DEPTH = 8  # details nest a few levels (merge, adaptive fallback); deeper is not credit's doing


def credit_detail(credit: CreditResult, key: str) -> dict[str, Any]:
    """Every `key` mapping found in the credit's details, at any depth, merged (the first seen wins a clash)."""
    found: dict[str, Any] = {}

    def walk(node: Any, depth: int) -> None:
        if depth > _MAX_DEPTH:
            return
        if isinstance(node, dict):
            value = node.get(key)
            if isinstance(value, dict):
                for k, v in value.items():
                    found.setdefault(k, v)
            for k, v in node.items():
                if k != key:
                    walk(v, depth + 1)
        elif isinstance(node, list):
            for item in node:
                walk(item, depth + 1)

    walk(credit.details, 0)
    return found


def example_contexts(credit: CreditResult, example_ids: list[str]) -> list[tuple[str, str, str]]:
    """(example id, input, output) for each of `example_ids` that the credit gave a context for, in that order."""
    known = credit_detail(credit, "example_context")
    out = []
    for eid in dict.fromkeys(example_ids):
        ctx = known.get(eid)
        if isinstance(ctx, dict):
            out.append((eid, str(ctx.get("input", "")), str(ctx.get("output", ""))))
    return out


def without_shown_parameters(text: str, credit: CreditResult, shown: list[Parameter]) -> str:
    """`text` (a trace) with the blocks of the parameters the prompt already shows replaced by a short reference."""
    blocks = credit_detail(credit, "parameter_blocks")
    for param in shown:
        block = blocks.get(param.id)
        if isinstance(block, str) and block and block in text:
            text = text.replace(block, prompts.PARAMETER_SHOWN_ELSEWHERE.format(id=param.id, kind=param.kind))
    return text
