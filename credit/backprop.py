"""Textual backpropagation (TextGrad-style): feedback flows hop by hop from the output back to each parameter."""
from __future__ import annotations

import asyncio
import contextlib
import gc
import threading
from typing import Iterator

from credit import prompts
from textgrad_core.checkpoint import expect_empty_state
from textgrad_core.credit import PER_PARAMETER, CreditResult, ExampleTrace, ParameterFeedback
from textgrad_core.engines import Engine, LLMRequest
from textgrad_core.optimizers.budget import CHARS_PER_TOKEN, clip_middle, fit_texts
from textgrad_core.variable import OpRecord, Parameter, Variable

# An input value shorter than this is not replaced by a reference in the quoted prompt: it could match by accident,
# and the reference itself is about this long.
MIN_DEDUP_CHARS = 80
# The example context a strategy publishes for the optimizer is bounded per value; the optimizer cuts further.
CONTEXT_CHARS = 20_000


def render_value(value: object, limit: int | None) -> str:
    """A value as text; past `limit` characters its head and tail around a visible mark (the answer is at the end)."""
    return clip_middle(str(value), limit)


def example_context(trace: ExampleTrace) -> dict[str, str]:
    """The example's input (the values with no producing op that its output depends on) and the system's output."""
    upstream = trace.graph.depends_on(trace.output) - {trace.output.id}  # the output is not its own input
    sources = [v for v in trace.graph.topological_order()
               if v.id in upstream and v.op is None and not isinstance(v, Parameter)]
    text = "\n".join(f"{v.role}: {v.value}" if len(sources) > 1 else str(v.value) for v in sources)
    return {"input": clip_middle(text, CONTEXT_CHARS), "output": clip_middle(str(trace.output.value), CONTEXT_CHARS)}


_freeze_lock = threading.Lock()
_freeze_depth = 0


@contextlib.contextmanager
def old_objects_frozen() -> Iterator[None]:
    """While credit runs, leave every object that existed before it out of the cyclic collector's full scans.

    Why: per-edge calls create tasks, requests and replies, and those kept alive a while (calls in flight, a
    backend's request log) trigger a full collection every few thousand edges; each one rescanned the whole recorded
    graph (and the rest of the heap), a cost that grows with the graph times the number of edges (5-10% of
    bookkeeping at 10,000 ops, growing with size). `gc.freeze` only moves those objects aside (refcounting still frees
    them; cyclic garbage among them waits until the outermost exit). Nested and concurrent uses share one freeze; a
    freeze the program made itself is left alone (nothing is frozen or unfrozen then).
    """
    global _freeze_depth
    with _freeze_lock:
        owner = _freeze_depth > 0 or gc.get_freeze_count() == 0
        if owner:
            if _freeze_depth == 0:
                gc.freeze()
            _freeze_depth += 1
    try:
        yield
    finally:
        if owner:
            with _freeze_lock:
                _freeze_depth -= 1
                if _freeze_depth == 0:
                    gc.unfreeze()


class Backprop:
    """One LLM call per edge that leads to a trainable parameter, in reverse topological order."""

    name = "backprop"
    kind = PER_PARAMETER

    def __init__(self, skip_perfect: bool = True, value_limit: int | None = None, max_tokens: int = 512,
                 prompt_token_budget: int | None = 6000):
        self.skip_perfect = skip_perfect  # an example scored 1.0 costs no call: there is nothing to correct
        self.value_limit = value_limit  # a hard cap per value (head and tail kept); None: only the budget cuts
        self.max_tokens = max_tokens
        # Tokens (~ characters / 4) of each per-edge prompt; past it, its values are cut head and tail to one length.
        self.prompt_token_budget = prompt_token_budget

    async def assign(self, traces: list[ExampleTrace], params: list[Parameter], engine: Engine) -> CreditResult:
        """Feedback for every parameter from every example; all examples and independent edges run concurrently."""
        todo = [t for t in traces if not (self.skip_perfect and t.score is not None and t.score >= 1.0)]  # unscored: not known perfect
        with old_objects_frozen():
            per_example = await asyncio.gather(*(self._example(t, params, engine) for t in todo))
        result = CreditResult(strategy=self.name, kind=self.kind, scores={t.example_id: t.score for t in traces},
                              details={"skipped_examples": [t.example_id for t in traces if t not in todo],
                                       "example_context": {t.example_id: example_context(t) for t in todo}})
        for trace, feedback in zip(todo, per_example):
            for param_id, text in feedback.items():
                result.feedback.setdefault(param_id, []).append(ParameterFeedback(trace.example_id, text))
        return result

    async def _example(self, trace: ExampleTrace, params: list[Parameter], engine: Engine) -> dict[str, str]:
        """Feedback for each parameter of one example: each edge's call starts the moment its op's output has feedback.

        Bookkeeping is one task per edge and nothing per node: when a node's feedback is known, a call starts for
        each input of the op that produced it (in input order); when the last call from a node's successors returns,
        their texts are aggregated in successor order and become that node's feedback. Nothing waits that could run,
        so the chain of dependent calls is the critical path, and no task sits parked waiting for another's result.
        """
        sub = trace.graph.minimal_subgraph(trace.output, params)
        wanted = [p for p in params if p.id in sub.g]
        if trace.output.id not in sub.g or not wanted:
            return {}
        loop = asyncio.get_running_loop()
        variables = {n: attrs["var"] for n, attrs in sub.g.nodes.items()}
        inputs_of = {n: list(before) for n, before in sub.g.pred.items()}  # adjacency once per example
        successors_of = {n: list(after) for n, after in sub.g.succ.items()}
        received: dict[str, dict[str, str]] = {n: {} for n in successors_of}  # node -> successor id -> edge feedback
        found: dict[str, str] = {}
        done = loop.create_future()
        running: set[asyncio.Task] = set()

        def feedback_known(node: str, text: str) -> None:
            var = variables[node]
            if isinstance(var, Parameter):  # shared by all examples: its feedback is returned, not stored
                found[node] = text
                if len(found) == len(wanted):
                    done.set_result(None)
            elif var is not trace.output:
                var.feedback.append(text)
            for target in inputs_of[node]:
                task = loop.create_task(self._edge(var, variables[target], text, engine))
                running.add(task)
                task.add_done_callback(lambda task, target=target, node=node: edge_returned(task, target, node))

        def edge_returned(task: asyncio.Task, target: str, node: str) -> None:
            running.discard(task)
            if done.done():
                if not task.cancelled():
                    task.exception()  # retrieved: the example already failed or finished, nothing is lost
                return
            if task.cancelled():
                done.cancel()
                return
            if task.exception() is not None:  # a failed call (budget, provider) fails the example, as it always did
                done.set_exception(task.exception())
                return
            texts = received[target]
            texts[node] = task.result()
            if len(texts) == len(successors_of[target]):
                feedback_known(target, aggregate([(f"{variables[s].op.name} ({s})", texts[s])
                                                  for s in successors_of[target]]))

        feedback_known(trace.output.id, str(trace.loss.value))
        try:
            await done
        finally:
            for task in running:  # a failure or cancellation stops the calls still in flight
                task.cancel()
        return {p.id: found[p.id] for p in wanted}

    async def _edge(self, op_output: Variable, target: Variable, feedback: str, engine: Engine) -> str:
        """One call: feedback for `target` from the op that produced `op_output`, given the feedback on that output."""
        request = LLMRequest.chat(self.edge_prompt(op_output, target, feedback), system=prompts.BACKPROP_SYSTEM,
                                  max_tokens=self.max_tokens, tag=f"credit:{self.name}:{op_output.op.name}")
        return (await engine.acomplete(request)).text

    def edge_prompt(self, op_output: Variable, target: Variable, feedback: str) -> str:
        """The per-edge prompt: the op, the target input, the op's output and the feedback on it, each value once.

        The prompt the op sent is quoted with the values this prompt shows elsewhere (the target, and the siblings
        of the semantic strategy) replaced by a reference; past the token budget every value is cut head and tail.
        """
        op = op_output.op
        assert op is not None
        field = next(f for f, v in op.inputs if v is target)
        siblings = self.sibling_inputs(op_output, target)
        shown = [(field, target, "INPUTS")] + [(f, v, "SIBLINGS") for f, v in siblings]
        quoted = self.prompt_sent(op.prompt, shown) if op.prompt else None
        texts = [quoted or "", feedback] + self.values_once(field, target, op_output, siblings)

        def build(texts: list[str]) -> str:
            sent, fb, target_value, output, *sibling_values = texts
            details = []
            if quoted is not None:
                details.append(prompts.OP_PROMPT.format(prompt=sent))
            if op.source and str(target.value) != op.source:  # a code op runs its input: shown once, in INPUTS
                details.append(prompts.OP_SOURCE.format(source=op.source))
            if op.error:
                details.append(prompts.OP_ERROR.format(error=op.error))
            return prompts.BACKPROP_USER.format(
                op_name=op.name, op_kind=op.kind, op_description=describe(op),
                op_detail="\n".join(details), inputs=self.render_input(field, target, target_value),
                output_role=op_output.role, output=output, feedback=fb,
                siblings=self.siblings_section(siblings, sibling_values), target_field=field,
                trainable_note=", a trainable parameter" if isinstance(target, Parameter) else "", target_id=target.id,
            )

        text = build(texts)
        if self.prompt_token_budget is not None and len(text) > self.prompt_token_budget * CHARS_PER_TOKEN:
            fixed = len(text) - sum(map(len, texts))
            text = build(fit_texts(texts, self.prompt_token_budget * CHARS_PER_TOKEN - fixed - 50 * len(texts)))
        return text

    def values_once(self, field: str, target: Variable, op_output: Variable,
                    siblings: list[tuple[str, Variable]]) -> list[str]:
        """The target's, the output's and each sibling's value as the prompt shows them, in that order: a value equal
        to one shown before it (an op that passes its input through, two identical siblings) becomes a reference."""
        shown: dict[str, str] = {}
        out = []
        for value, where in [(target.value, prompts.SAME_AS_INPUT.format(field=field)), (op_output.value, prompts.SAME_AS_OUTPUT)] + \
                [(var.value, prompts.SAME_AS_SIBLING.format(field=f)) for f, var in siblings]:
            text = str(value)
            if len(text) >= MIN_DEDUP_CHARS and text in shown:
                out.append(shown[text])
                continue
            if len(text) >= MIN_DEDUP_CHARS:
                shown[text] = where
            out.append(render_value(value, self.value_limit))
        return out

    @staticmethod
    def prompt_sent(messages: list[dict[str, str]], shown: list[tuple[str, Variable, str]]) -> str:
        """The op's messages as one text, each value shown elsewhere in the edge prompt replaced by a reference."""
        text = "\n".join(f"[{m['role']}] {m['content']}" for m in messages)
        for field, var, where in sorted(shown, key=lambda s: -len(str(s[1].value))):  # longest first: no partial hits
            value = str(var.value)
            if len(value) >= MIN_DEDUP_CHARS and value in text:
                text = text.replace(value, prompts.VALUE_SHOWN_BELOW.format(field=field, where=where))
        return text

    def render_input(self, field: str, var: Variable, value: str | None = None) -> str:
        """The target input's block (its value as given, else rendered at the value limit)."""
        trainable = ' trainable="true"' if var.requires_grad else ""
        return prompts.INPUT_ITEM.format(field=field, role=var.role, trainable=trainable,
                                         value=render_value(var.value, self.value_limit) if value is None else value)

    def sibling_inputs(self, op_output: Variable, target: Variable) -> list[tuple[str, Variable]]:
        """The op's other inputs this prompt shows: none for plain backprop (the semantic strategy shows them all)."""
        return []

    def siblings_section(self, siblings: list[tuple[str, Variable]], values: list[str]) -> str:
        """The section listing the siblings with their (possibly cut) values; empty when there are none."""
        items = [prompts.SIBLING_ITEM.format(field=field, id=var.id, role=var.role,
                                             trainable="true" if var.requires_grad else "false", value=value)
                 for (field, var), value in zip(siblings, values)]
        return prompts.SEMANTIC_SIBLINGS.format(siblings="\n".join(items)) if items else ""

    def state_dict(self) -> dict:
        """Nothing changes between steps (its options come from the config): an empty state, for a checkpoint."""
        return {}

    def load_state_dict(self, state: dict) -> None:
        """Accept the empty state `state_dict` returns; anything else is a malformed checkpoint."""
        expect_empty_state(self, state)


def describe(op: OpRecord) -> str:
    """The op's description for a prompt; a reference when it is the docstring of the source the prompt shows."""
    if not op.description:
        return prompts.NO_DESCRIPTION
    if op.source and op.description in op.source:
        return prompts.DESCRIPTION_IN_SOURCE
    return op.description


def aggregate(items: list[tuple[str, str]]) -> str:
    """One message per node from the feedback of each of its successors, each kept once."""
    if len(items) == 1:
        return items[0][1]
    return "\n".join(prompts.AGGREGATE_ITEM.format(source=src, text=text) for src, text in items)
