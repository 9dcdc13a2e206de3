"""Trace propagation (Trace/OptoPrime-style): the minimal subgraph of each example, serialized for one joint update."""
from __future__ import annotations

from dataclasses import dataclass, field

from credit import prompts
from credit.backprop import render_value
from textgrad_core.credit import TRACE, CreditResult, ExampleTrace, score_text
from textgrad_core.engines import Engine
from textgrad_core.variable import OpRecord, Parameter, Variable


def approx_tokens(text: str) -> int:
    """Tokens of `text` estimated as characters / 4 (rounded up): no tokenizer is tied to the credit engine."""
    return -(-len(text) // 4)


@dataclass
class ExampleSection:
    """One example of the trace: its serialized block and what the shared header must describe for it."""

    example_id: str
    text: str
    operations: dict[str, OpRecord] = field(default_factory=dict)  # op name -> a record of it (for its docs)
    parameters: list[Parameter] = field(default_factory=list)


class TracePropagation:
    """No per-edge calls: each example's minimal subgraph, serialized as a compact code-like trace with its feedback.

    Only the operations on some path from a trainable parameter to the output appear; an input of such an operation
    that no parameter influences is shown by value, as `<input>`, without the operations that produced it. Parameter
    values are shown whole (the optimizer rewrites them), once for the minibatch; every other value is cut at
    `value_limit` characters with a visible mark. Each operation's description (and template, or source) is shown
    once per operation name; the feedback on each output is shown whole. Zero engine calls.
    """

    name = "trace"
    kind = TRACE

    def __init__(self, value_limit: int | None = 400):
        self.value_limit = value_limit

    async def assign(self, traces: list[ExampleTrace], params: list[Parameter], engine: Engine) -> CreditResult:
        """The serialized trace of the whole minibatch, with every example's score."""
        text = self.render([self.section(t, params) for t in traces])
        return CreditResult(strategy=self.name, kind=self.kind, trace=text,
                            scores={t.example_id: t.score for t in traces},
                            details={"trace_chars": len(text), "trace_tokens": approx_tokens(text),
                                     "value_limit": self.value_limit, "examples": [t.example_id for t in traces]})

    # ---- serialization ----------------------------------------------------------------------------------------
    def section(self, trace: ExampleTrace, params: list[Parameter]) -> ExampleSection:
        """The block of one example: its minimal subgraph in topological order, then its feedback and score."""
        sub = trace.graph.minimal_subgraph(trace.output, params)
        section = ExampleSection(trace.example_id, "")
        lines: list[str] = []
        if trace.output.id not in sub.g:
            lines.append(prompts.TRACE_NO_PATH)
        else:
            section.parameters = [p for p in params if p.id in sub.g]
            declared = {p.id for p in section.parameters}
            for var in sub.topological_order():
                if var.id in declared:
                    continue
                if var.op is None:  # defensive: only parameters are sources of the minimal subgraph
                    lines += self._input_lines(var)
                    declared.add(var.id)
                    continue
                for _, inp in var.op.inputs:
                    if inp.id not in sub.g and inp.id not in declared:  # no parameter reaches it: value only
                        lines += self._input_lines(inp)
                        declared.add(inp.id)
                section.operations.setdefault(var.op.name, var.op)
                arguments = ", ".join(f"{f}={inp.id}" for f, inp in var.op.inputs)
                lines.append(prompts.TRACE_OP_LINE.format(id=var.id, op_name=var.op.name, arguments=arguments, role=var.role))
                lines.append(self._value_block(var.value))
                if var.op.error:
                    lines.append(prompts.TRACE_ERROR_LINE.format(op_name=var.op.name, error=var.op.error))
                declared.add(var.id)
        section.text = prompts.TRACE_EXAMPLE.format(
            example_id=trace.example_id, score=score_text(trace.score), lines="\n".join(lines), output_id=trace.output.id,
            feedback=trace.loss.value)
        return section

    def render(self, sections: list[ExampleSection]) -> str:
        """The whole trace: the parameters and operation docs the sections use (once each), then the sections."""
        parameters: dict[str, Parameter] = {}
        operations: dict[str, OpRecord] = {}
        for s in sections:
            for p in s.parameters:
                parameters.setdefault(p.id, p)
            for name, op in s.operations.items():
                operations.setdefault(name, op)
        return prompts.TRACE.format(
            n_examples=len(sections),
            parameters="\n".join(prompts.TRACE_PARAMETER.format(id=p.id, kind=p.kind, role=p.role, value=p.value)
                                 for p in parameters.values()),
            operations="\n".join(self._operation_doc(op) for op in operations.values()),
            examples="\n".join(s.text for s in sections))

    def _input_lines(self, var: Variable) -> list[str]:
        return [prompts.TRACE_INPUT_LINE.format(id=var.id, role=var.role), self._value_block(var.value)]

    def _value_block(self, value: object) -> str:
        text = render_value(value, self.value_limit)
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
        return prompts.TRACE_OPERATION.format(name=op.name, kind=op.kind, description=op.description or "(no description)",
                                              detail=detail)
