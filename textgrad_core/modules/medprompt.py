"""A Medprompt-style ensemble (Nori et al. 2023): kNN-selected few-shot demos from a pool of solved TRAINING
examples, self-generated chain of thought, and choice-shuffled ensembling with a majority vote.

The pool is a `demos` parameter ({"id", "input", "output"} from the training split only; `allowed_ids` enforces
it); each question sees its `shots` nearest demos (token-overlap cosine, ties by pool order). The ensemble asks
`ensemble` times, each time with the options in another order (a permutation fixed by the question and the
member's index), maps each letter back to its option, and votes. Graph: one `<name>.knn` node (fed by the demos
parameter), `ensemble` LLM nodes `<name>.member` (fed by the instruction and the selected demos), one
`<name>.vote` node fed by every member and the `ensemble` parameter. `self_generated_demos` builds a pool from
the model's own correct chains of thought on training examples (the bootstrap optimizer grows it during a run).
"""
from __future__ import annotations

import asyncio
import hashlib
import math
import random
import re
from collections import Counter
from typing import Any, Awaitable, Callable

from textgrad_core.engines import Engine
from textgrad_core.modules import prompts
from textgrad_core.modules.base import Module, ParameterSpec, whole_number
from textgrad_core.modules.self_consistency import vote
from textgrad_core.ops import FormattedLLMCall
from textgrad_core.variable import OpRecord, ParameterSet, Variable

LETTERS = "ABCDEFGHIJ"
_LETTER = re.compile(r"answer\s*:\s*\(?([A-J])\)?", re.IGNORECASE)


def similarity(a: str, b: str) -> float:
    """Cosine of the two texts' word-count vectors (the kNN's distance; no embedding model is needed offline)."""
    ca, cb = Counter(re.findall(r"\w+", a.lower())), Counter(re.findall(r"\w+", b.lower()))
    dot = sum(ca[w] * cb[w] for w in ca)
    norm = math.sqrt(sum(v * v for v in ca.values())) * math.sqrt(sum(v * v for v in cb.values()))
    return dot / norm if norm else 0.0


def nearest(question: str, pool: list[dict[str, Any]], shots: int) -> list[dict[str, Any]]:
    """The `shots` demos of the pool most similar to the question (ties keep the pool's order)."""
    ranked = sorted(range(len(pool)), key=lambda i: (-similarity(question, str(pool[i]["input"])), i))
    return [pool[i] for i in ranked[:shots]]


def shuffled(question: str, options: list[str], member: int) -> list[int]:
    """The option order member `member` sees: member 0 the original, others a permutation seeded by the question."""
    order = list(range(len(options)))
    if member:
        seed = int.from_bytes(hashlib.sha256(f"{question}\x1f{member}".encode()).digest()[:8], "big")
        random.Random(seed).shuffle(order)
    return order


def options_block(options: list[str], order: list[int]) -> str:
    """The options as lines '(A) ...' in the given order."""
    return "\n".join(f"({LETTERS[pos]}) {options[i]}" for pos, i in enumerate(order))


def demo_output(reply: str, option: str) -> str:
    """A member's chain of thought as a demo: its reasoning, with the letter line replaced by the option's text
    (a demo is shown without options, so a letter would mean nothing)."""
    reasoning = "\n".join(line for line in reply.splitlines() if not _LETTER.search(line)).strip()
    return f"{reasoning}\nAnswer: {option}".strip()


def render_demos(demos: list[dict[str, Any]]) -> str:
    """Demos as 'Question: ... / <output>' blocks (the output is the demo's chain of thought and answer)."""
    return "\n\n".join(f"Question: {d['input']}\n{d['output']}" for d in demos) or "(none)"


class Medprompt(Module):
    """kNN few-shot + self-generated CoT + choice-shuffle ensemble with a vote."""

    def __init__(self, name: str = "medprompt", instruction: str = prompts.MEDPROMPT_INSTRUCTION,
                 pool: list[dict[str, Any]] | None = None, allowed_ids: list[str] | None = None, shots: int = 3,
                 ensemble: int = 5, max_ensemble: int = 9, max_pool: int = 64, temperature: float = 0.7,
                 max_tokens: int = 1024):
        super().__init__(name)
        self.initial = {"instruction": instruction, "pool": list(pool or []), "ensemble": ensemble}
        self.allowed_ids = list(allowed_ids) if allowed_ids is not None else None
        self.shots, self.max_ensemble, self.max_pool = shots, max_ensemble, max_pool
        self.temperature, self.max_tokens = temperature, max_tokens

    def specs(self) -> list[ParameterSpec]:
        from textgrad_core.validators import DemosFrom, NumberRange

        return [
            ParameterSpec("instruction", self.initial["instruction"], "instruction of every ensemble member",
                          constraints=["Keep the final line format 'Answer: <letter>'."]),
            ParameterSpec("demos", self.initial["pool"], "pool of solved training examples the kNN picks few-shot "
                          "demos from (each: the question and a chain of thought ending with its answer)",
                          kind="demos", extra={"allowed_ids": self.allowed_ids,
                                               "validators": [DemosFrom(max_demos=self.max_pool)]}),
            ParameterSpec("ensemble", self.initial["ensemble"], f"number of choice-shuffled members voting "
                          f"(1..{self.max_ensemble})", kind="number",
                          extra={"validators": [NumberRange(1, self.max_ensemble, integer=True)]}),
        ]

    async def acall(self, engine: Engine, question: str, options: list[str],
                    params: ParameterSet | None = None) -> Variable:
        """Answer a multiple-choice question; returns the vote node, whose value ends 'Answer: <option text>'."""
        instruction, demos_param = self.param(params, "instruction"), self.param(params, "demos")
        ensemble_param = self.param(params, "ensemble")
        members = whole_number(ensemble_param, 1, self.max_ensemble)
        picked = nearest(question, list(demos_param.value or []), self.shots)
        knn = Variable(render_demos(picked), role=f"the {len(picked)} nearest solved training examples",
                       op=OpRecord(name=f"{self.name}.knn", kind="function",
                                   inputs=[("pool", demos_param), ("question", Variable(question, role="question"))],
                                   description=f"kNN: the {self.shots} demos of the pool most similar to the question."))
        member_llm = FormattedLLMCall(engine, prompts.MEDPROMPT_TEMPLATE,
                                      {"demos": "nearest solved examples", "question": "question",
                                       "options": "the options, in this member's order"}, instruction,
                                      name=f"{self.name}.member", temperature=self.temperature,
                                      max_tokens=self.max_tokens, output_role="one ensemble member's reasoning and letter")
        orders = [shuffled(question, options, m) for m in range(members)]
        replies = await asyncio.gather(*(member_llm.acall(sample_index=m, demos=knn, question=question,
                                                          options=options_block(options, order))
                                         for m, order in enumerate(orders)))
        chosen = [self._option(str(r.value), options, order) for r, order in zip(replies, orders)]
        winner, agreement = vote(chosen)
        op = OpRecord(name=f"{self.name}.vote", kind="function",
                      inputs=[(f"member{i + 1}", r) for i, r in enumerate(replies)] + [("ensemble", ensemble_param)],
                      description="Each member's letter mapped back to its option (members saw shuffled options); "
                                  "majority vote.")
        text = (f"Members chose {[c for c in chosen]} (agreement {agreement:.2f}).\n"
                f"Answer: {winner if winner is not None else ''}")
        output = Variable(value=text, role="the ensemble's answer", op=op)
        if chosen[0] is not None:  # member 0 saw the original order; as a demo its answer names the option itself
            self.record(params, question, demo_output(str(replies[0].value), chosen[0]))
        return output

    @staticmethod
    def _option(reply: str, options: list[str], order: list[int]) -> str | None:
        found = _LETTER.findall(reply)
        if not found:
            return None
        pos = LETTERS.index(found[-1].upper())
        return options[order[pos]] if pos < len(order) else None


async def self_generated_demos(solve: Callable[[dict[str, Any]], Awaitable[str]], examples: list[dict[str, Any]],
                               correct: Callable[[str, dict[str, Any]], bool], limit: int) -> list[dict[str, Any]]:
    """Medprompt's pool: the model's own chain of thought on TRAINING examples ({"id", "input", ...}), kept only when
    its answer is correct; at most `limit`, in the examples' order."""
    outputs = await asyncio.gather(*(solve(e) for e in examples))
    kept = [{"id": str(e["id"]), "input": str(e["input"]), "output": o} for e, o in zip(examples, outputs) if correct(o, e)]
    return kept[:limit]
