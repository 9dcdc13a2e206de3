"""Textual backpropagation (TextGrad-style): feedback flows hop by hop from the output back to each parameter."""
from __future__ import annotations

import asyncio
from typing import Awaitable

from credit import prompts
from textgrad_core.credit import PER_PARAMETER, CreditResult, ExampleTrace, ParameterFeedback
from textgrad_core.engines import Engine, LLMRequest
from textgrad_core.variable import Parameter, Variable


def render_value(value: object, limit: int | None) -> str:
    """A value as text, cut at `limit` characters with a visible mark."""
    text = str(value)
    if limit is not None and len(text) > limit:
        return text[:limit] + f" ...[cut: {len(text) - limit} more characters]"
    return text


class Backprop:
    """One LLM call per edge that leads to a trainable parameter, in reverse topological order."""

    name = "backprop"
    kind = PER_PARAMETER

    def __init__(self, skip_perfect: bool = False, value_limit: int | None = None, max_tokens: int = 512):
        self.skip_perfect = skip_perfect
        self.value_limit = value_limit
        self.max_tokens = max_tokens

    async def assign(self, traces: list[ExampleTrace], params: list[Parameter], engine: Engine) -> CreditResult:
        """Feedback for every parameter from every example; all examples and independent edges run concurrently."""
        todo = [t for t in traces if not (self.skip_perfect and t.score is not None and t.score >= 1.0)]  # unscored: not known perfect
        per_example = await asyncio.gather(*(self._example(t, params, engine) for t in todo))
        result = CreditResult(strategy=self.name, kind=self.kind, scores={t.example_id: t.score for t in traces},
                              details={"skipped_examples": [t.example_id for t in traces if t not in todo]})
        for trace, feedback in zip(todo, per_example):
            for param_id, text in feedback.items():
                result.feedback.setdefault(param_id, []).append(ParameterFeedback(trace.example_id, text))
        return result

    async def _example(self, trace: ExampleTrace, params: list[Parameter], engine: Engine) -> dict[str, str]:
        sub = trace.graph.minimal_subgraph(trace.output, params)
        if trace.output.id not in sub.g:
            return {}
        tasks: dict[str, asyncio.Future] = {}

        def node_feedback(var: Variable) -> Awaitable[str]:
            if var.id not in tasks:
                tasks[var.id] = asyncio.ensure_future(compute(var))
            return tasks[var.id]

        async def compute(var: Variable) -> str:
            if var is trace.output:
                return str(trace.loss.value)
            successors = sub.successors(var)
            texts = await asyncio.gather(*(self._edge(succ, var, node_feedback(succ), engine) for succ in successors))
            aggregated = aggregate([(f"{s.op.name} ({s.id})", t) for s, t in zip(successors, texts)])
            if not isinstance(var, Parameter):  # parameters are shared by all examples: their feedback is returned, not stored
                var.feedback.append(aggregated)
            return aggregated

        wanted = [p for p in params if p.id in sub.g]
        texts = await asyncio.gather(*(node_feedback(p) for p in wanted))
        return {p.id: t for p, t in zip(wanted, texts)}

    async def _edge(self, op_output: Variable, target: Variable, output_feedback: Awaitable[str], engine: Engine) -> str:
        """One call: feedback for `target` from the op that produced `op_output`, once that output's feedback is known."""
        feedback = await output_feedback
        request = LLMRequest.chat(self.edge_prompt(op_output, target, feedback), system=prompts.BACKPROP_SYSTEM,
                                  max_tokens=self.max_tokens, tag=f"credit:{self.name}:{op_output.op.name}")
        return (await engine.acomplete(request)).text

    def edge_prompt(self, op_output: Variable, target: Variable, feedback: str) -> str:
        """The per-edge prompt: the op, the target input, the op's output and the feedback on it."""
        op = op_output.op
        assert op is not None
        field = next(f for f, v in op.inputs if v is target)
        details = []
        if op.prompt:
            details.append(prompts.OP_PROMPT.format(prompt="\n".join(f"[{m['role']}] {m['content']}" for m in op.prompt)))
        if op.source:
            details.append(prompts.OP_SOURCE.format(source=op.source))
        if op.error:
            details.append(prompts.OP_ERROR.format(error=op.error))
        return prompts.BACKPROP_USER.format(
            op_name=op.name, op_kind=op.kind, op_description=op.description or "(no description)",
            op_detail="\n".join(details), inputs=self.render_input(field, target),
            output_role=op_output.role, output=render_value(op_output.value, self.value_limit), feedback=feedback,
            siblings=self.siblings_section(op_output, target), target_field=field, target_role=target.role,
            trainable_note=", a trainable parameter" if isinstance(target, Parameter) else "", target_id=target.id,
        )

    def render_input(self, field: str, var: Variable) -> str:
        trainable = ' trainable="true"' if var.requires_grad else ""
        return prompts.INPUT_ITEM.format(field=field, role=var.role, trainable=trainable,
                                         value=render_value(var.value, self.value_limit))

    def siblings_section(self, op_output: Variable, target: Variable) -> str:
        """Plain backprop shows no siblings; the semantic strategy overrides this."""
        return ""


def aggregate(items: list[tuple[str, str]]) -> str:
    """One message per node from the feedback of each of its successors, each kept once."""
    if len(items) == 1:
        return items[0][1]
    return "\n".join(prompts.AGGREGATE_ITEM.format(source=src, text=text) for src, text in items)
