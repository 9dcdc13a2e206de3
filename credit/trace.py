"""Trace propagation (Trace/OptoPrime-style): the minimal subgraph of each example, serialized for one joint update."""
from __future__ import annotations

from dataclasses import dataclass, field

from credit import prompts
from credit.backprop import MIN_DEDUP_CHARS, describe, render_value
from textgrad_core.checkpoint import expect_empty_state
from textgrad_core.credit import TRACE, CreditResult, ExampleTrace, score_text
from textgrad_core.engines import Engine
from textgrad_core.graph import Graph
from textgrad_core.optimizers.budget import CHARS_PER_TOKEN, approx_tokens, shared_cap
from textgrad_core.optimizers.kinds import render_value as render_parameter_value
from textgrad_core.variable import OpRecord, Parameter, Variable

__all__ = ["ExampleSection", "TracePropagation", "approx_tokens"]


@dataclass
class ExampleSection:
    """One example of the trace: its serialized block and what the shared header must describe for it."""

    example_id: str
    header: str  # the EXAMPLE tag's attributes
    footer: str  # the output id and the feedback on it
    # The block's lines; an int is the index of a value in `values`, written by `render` (whole, cut, or as a
    # reference when the trace already showed the same value: which depends on the sections before it).
    lines: list[str | int] = field(default_factory=list)
    values: list[tuple[str, str, str]] = field(default_factory=list)  # (value text, its block, a reference to it)
    operations: dict[str, OpRecord] = field(default_factory=dict)  # op name -> a record of it (for its docs)
    parameters: list[Parameter] = field(default_factory=list)


class TracePropagation:
    """No per-edge calls: each example's minimal subgraph, serialized as a compact code-like trace with its feedback.

    Only the operations on some path from a trainable parameter to the output appear; an input of such an operation
    that no parameter influences is shown by value, as `<input>`, without the operations that produced it. Parameter
    values are shown whole (the optimizer rewrites them), once for the minibatch. Every other value is shown whole
    while the whole trace fits `prompt_token_budget` (tokens ~ characters / 4); past it, the longest values are cut
    to one shared length keeping head and tail around a visible mark (the end of a response is where its answer
    is). A value identical to one shown earlier in the trace (a parameter's, or an earlier operation's of any
    example) is written as a reference to it, not again. `value_limit` is an optional hard cap per value. Each
    operation's description (and template, or source) is shown once per operation name; the feedback on each output
    is shown whole. Zero engine calls.

    `details["parameter_blocks"]` holds each parameter's block exactly as written, and `details["parameter_sections"]`
    the whole PARAMETERS section (its exact text -> the ids it lists), so an optimizer that shows a value itself can
    leave the trace's copy out, and one that shows every parameter the whole section (no value twice in one prompt).
    """

    name = "trace"
    kind = TRACE

    def __init__(self, value_limit: int | None = None, prompt_token_budget: int | None = 12000):
        self.value_limit = value_limit
        self.prompt_token_budget = prompt_token_budget

    async def assign(self, traces: list[ExampleTrace], params: list[Parameter], engine: Engine) -> CreditResult:
        """The serialized trace of the whole minibatch, with every example's score."""
        paths = [self.path(t, params) for t in traces]  # cut once: a second, capped pass reuses them
        sections = [self.section(t, params, path=path) for t, path in zip(traces, paths)]
        (text, lengths), cap = self.render_measured(sections), None
        if self.prompt_token_budget is not None and approx_tokens(text) > self.prompt_token_budget:
            shown = sum(min(n, self.value_limit) if self.value_limit is not None else n for n in lengths)
            room = self.prompt_token_budget * CHARS_PER_TOKEN - (len(text) - shown) - 60 * len(lengths)
            cap = shared_cap(lengths, room)
            if cap is not None:
                cap = min(cap, self.value_limit) if self.value_limit is not None else cap
                sections = [self.section(t, params, cap, path=path) for t, path in zip(traces, paths)]
                text = self.render(sections)
        blocks = self.parameter_blocks(sections)
        return CreditResult(strategy=self.name, kind=self.kind, trace=text,
                            scores={t.example_id: t.score for t in traces},
                            details={"trace_chars": len(text), "trace_tokens": approx_tokens(text),
                                     "value_limit": self.value_limit, "prompt_token_budget": self.prompt_token_budget,
                                     "value_cap": cap, "examples": [t.example_id for t in traces],
                                     "parameter_blocks": blocks,
                                     "parameter_sections": {self.parameters_section(sections): list(blocks)}})

    # ---- serialization ----------------------------------------------------------------------------------------
    @staticmethod
    def path(trace: ExampleTrace, params: list[Parameter]) -> tuple[Graph, list[Variable]]:
        """The example's minimal subgraph and its topological order (what `section` serializes)."""
        sub = trace.graph.minimal_subgraph(trace.output, params)
        return sub, sub.topological_order()

    def section(self, trace: ExampleTrace, params: list[Parameter], cap: int | None = None,
                path: tuple[Graph, list[Variable]] | None = None) -> ExampleSection:
        """The block of one example: its minimal subgraph in topological order, then its feedback and score.

        `path` is `self.path(trace, params)` when the caller already has it (serializing twice cuts once).
        """
        sub, order = path if path is not None else self.path(trace, params)
        section = ExampleSection(trace.example_id, prompts.TRACE_EXAMPLE_ATTRIBUTES.format(
            example_id=trace.example_id, score=score_text(trace.score)), "")
        lines = section.lines
        limit = self.value_limit if cap is None else cap

        def value_block(var: Variable) -> int:
            section.values.append((str(var.value), self._value_block(var.value, limit),
                                   prompts.TRACE_SAME_AS.format(id=var.id, example_id=trace.example_id)))
            return len(section.values) - 1

        def input_lines(var: Variable) -> list[str | int]:
            return [prompts.TRACE_INPUT_LINE.format(id=var.id, role=var.role), value_block(var)]

        if trace.output.id not in sub.g:
            lines.append(prompts.TRACE_NO_PATH)
        else:
            section.parameters = [p for p in params if p.id in sub.g]
            declared = {p.id for p in section.parameters}
            for var in order:
                if var.id in declared:
                    continue
                if var.op is None:  # defensive: only parameters are sources of the minimal subgraph
                    lines += input_lines(var)
                    declared.add(var.id)
                    continue
                for _, inp in var.op.inputs:
                    if inp.id not in sub.g and inp.id not in declared:  # no parameter reaches it: value only
                        lines += input_lines(inp)
                        declared.add(inp.id)
                section.operations.setdefault(var.op.name, var.op)
                arguments = ", ".join(f"{f}={inp.id}" for f, inp in var.op.inputs)
                lines.append(prompts.TRACE_OP_LINE.format(id=var.id, op_name=var.op.name, arguments=arguments, role=var.role))
                lines.append(value_block(var))
                if var.op.error:
                    lines.append(prompts.TRACE_ERROR_LINE.format(op_name=var.op.name, error=var.op.error))
                declared.add(var.id)
        section.footer = prompts.TRACE_EXAMPLE_END.format(output_id=trace.output.id, feedback=trace.loss.value)
        return section

    def render(self, sections: list[ExampleSection]) -> str:
        """The whole trace: the parameters and operation docs the sections use (once each), then the sections."""
        return self.render_measured(sections)[0]

    def render_measured(self, sections: list[ExampleSection]) -> tuple[str, list[int]]:
        """`render`'s text, and the characters of each value as written before any cut (a reference: its own).

        Each value is written once: one equal to a parameter's value or to a value written earlier (in this or an
        earlier example) is written as a reference to it. Short values are always written (they match by accident).
        """
        operations: dict[str, OpRecord] = {}
        for s in sections:
            for name, op in s.operations.items():
                operations.setdefault(name, op)
        seen = {str(p.value): prompts.TRACE_SAME_AS_PARAMETER.format(id=pid) for pid, p in
                {p.id: p for s in sections for p in s.parameters}.items() if len(str(p.value)) >= MIN_DEDUP_CHARS}
        lengths: list[int] = []
        examples = []
        for s in sections:
            lines = []
            for line in s.lines:
                if isinstance(line, str):
                    lines.append(line)
                    continue
                text, block, reference = s.values[line]
                if len(text) >= MIN_DEDUP_CHARS and text in seen:
                    lines.append(prompts.TRACE_VALUE_PREFIX + seen[text])
                    lengths.append(len(seen[text]))
                    continue
                if len(text) >= MIN_DEDUP_CHARS:
                    seen[text] = reference
                lines.append(block)
                lengths.append(len(text))
            examples.append(prompts.TRACE_EXAMPLE.format(attributes=s.header, lines="\n".join(lines), end=s.footer))
        text = prompts.TRACE.format(
            n_examples=len(sections), parameters_section=self.parameters_section(sections),
            operations="\n".join(self._operation_doc(op) for op in operations.values()),
            examples="\n".join(examples))
        return text, lengths

    def parameters_section(self, sections: list[ExampleSection]) -> str:
        """The PARAMETERS section exactly as `render` writes it: each parameter the sections use, once."""
        blocks = self.parameter_blocks(sections)
        return prompts.TRACE_PARAMETERS.format(parameters="\n".join(blocks.values())) if blocks else ""

    def parameter_blocks(self, sections: list[ExampleSection]) -> dict[str, str]:
        """Each parameter's block exactly as `render` writes it, by parameter id."""
        return {p.id: self._parameter_block(p) for s in sections for p in s.parameters}

    @staticmethod
    def _parameter_block(p: Parameter) -> str:
        return prompts.TRACE_PARAMETER.format(id=p.id, kind=p.kind, role=p.role, value=render_parameter_value(p))

    @staticmethod
    def _value_block(value: object, limit: int | None) -> str:
        text = render_value(value, limit)
        return "\n".join(prompts.TRACE_VALUE_PREFIX + line for line in text.split("\n"))

    @staticmethod
    def _operation_doc(op: OpRecord) -> str:
        detail = ""
        if op.template:
            detail = prompts.TRACE_OP_TEMPLATE.format(template=op.template)
        elif op.source:
            # A code op runs the value of one of its inputs, which the trace already shows.
            same = next((f for f, v in op.inputs if str(v.value) == op.source), None)
            detail = (prompts.TRACE_OP_SOURCE_IS_INPUT.format(field=same) if same
                      else prompts.TRACE_OP_SOURCE.format(source=op.source.rstrip("\n")))
        return prompts.TRACE_OPERATION.format(name=op.name, kind=op.kind, description=describe(op),
                                              detail=detail)

    def state_dict(self) -> dict:
        """Nothing changes between steps (its options come from the config): an empty state, for a checkpoint."""
        return {}

    def load_state_dict(self, state: dict) -> None:
        """Accept the empty state `state_dict` returns; anything else is a malformed checkpoint."""
        expect_empty_state(self, state)
