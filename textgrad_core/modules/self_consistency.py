"""Chain-of-thought with self-consistency (Wang et al. 2023; Gemini's CoT@k): k samples, a majority vote, and a
greedy answer when the samples agree too little.

Graph: k LLM nodes `<name>.sample` (temperature > 0, sample_index 1..k: k distinct requests and cache entries),
each fed by the instruction; when agreement is below the threshold one greedy node `<name>.greedy` (temperature
0, sample_index 0); then one vote node `<name>.vote` whose inputs are every sample, the greedy answer if made,
and the `k` and `threshold` parameters, so credit reaches all three parameters.
Parameters: `<name>.instruction` (text), `<name>.k` (number), `<name>.threshold` (number in [0, 1]).
"""
from __future__ import annotations

import asyncio
import re
from collections import Counter
from typing import Any, Callable

from textgrad_core.engines import Engine
from textgrad_core.modules import prompts
from textgrad_core.modules.base import Module, ParameterSpec, fraction, whole_number
from textgrad_core.ops import LLMCall, as_variable
from textgrad_core.variable import OpRecord, ParameterSet, Variable

_ANSWER = re.compile(r"answer\s*:(.*)", re.IGNORECASE)


def last_answer(response: str) -> str | None:
    """The text after the last 'Answer:' of a response, stripped (None when there is none)."""
    found = _ANSWER.findall(response)
    return found[-1].strip() or None if found else None


def vote(answers: list[str | None]) -> tuple[str | None, float]:
    """The most frequent answer and its share of all samples; a tie goes to the answer sampled first."""
    counted = Counter(a for a in answers if a is not None)
    if not counted:
        return None, 0.0
    first = {a: answers.index(a) for a in counted}
    best = max(counted, key=lambda a: (counted[a], -first[a]))
    return best, counted[best] / len(answers)


class SelfConsistency(Module):
    """k chain-of-thought samples, majority vote; a greedy answer when agreement < threshold."""

    def __init__(self, name: str = "cot", instruction: str = prompts.COT_INSTRUCTION, k: int = 5,
                 threshold: float = 0.5, temperature: float = 0.7, max_k: int = 32,
                 extract: Callable[[str], str | None] = last_answer, instruction_constraints: list[str] | None = None,
                 max_tokens: int = 1024):
        super().__init__(name)
        self.initial = {"instruction": instruction, "k": k, "threshold": threshold}
        self.temperature = temperature
        self.max_k = max_k
        self.extract = extract
        self.instruction_constraints = list(instruction_constraints or [])
        self.max_tokens = max_tokens

    def specs(self) -> list[ParameterSpec]:
        return [
            ParameterSpec("instruction", self.initial["instruction"], "instruction of the chain-of-thought model "
                          "whose samples are voted on", constraints=self.instruction_constraints),
            ParameterSpec("k", self.initial["k"], f"number of chain-of-thought samples voted on (1..{self.max_k}); "
                          "more samples cost more calls", kind="number",
                          constraints=[f"A whole number from 1 to {self.max_k}."]),
            ParameterSpec("threshold", self.initial["threshold"], "least share of samples that must agree for the "
                          "vote to stand; below it the greedy answer is used", kind="number",
                          constraints=["A number from 0 to 1."]),
        ]

    async def acall(self, engine: Engine, question: Variable | str, params: ParameterSet | None = None) -> Variable:
        """Sample, vote and (when agreement is low) fall back to greedy; returns the vote node's output."""
        instruction = self.param(params, "instruction")
        k_param, threshold_param = self.param(params, "k"), self.param(params, "threshold")
        k, threshold = whole_number(k_param, 1, self.max_k), fraction(threshold_param)
        question = as_variable(question, "question")
        sampler = LLMCall(engine, instruction, name=f"{self.name}.sample", temperature=self.temperature,
                          max_tokens=self.max_tokens, output_role="one sampled chain of thought ending with 'Answer:'")
        samples = list(await asyncio.gather(*(sampler.acall(question, sample_index=i) for i in range(1, k + 1))))
        answers = [self.extract(str(s.value)) for s in samples]
        winner, agreement = vote(answers)
        greedy = None
        if agreement < threshold or winner is None:
            greedy_llm = LLMCall(engine, instruction, name=f"{self.name}.greedy", temperature=0.0,
                                 max_tokens=self.max_tokens, output_role="greedy chain of thought ending with 'Answer:'")
            greedy = await greedy_llm.acall(question, sample_index=0)
        output = self._vote_node(samples, answers, winner, agreement, greedy, k_param, threshold_param, threshold)
        self.record(params, str(question.value), str(output.value))
        return output

    def _vote_node(self, samples: list[Variable], answers: list[str | None], winner: str | None, agreement: float,
                   greedy: Variable | None, k_param: Variable, threshold_param: Variable, threshold: float) -> Variable:
        tally = Counter(a for a in answers if a is not None)
        shown = ", ".join(f"{a!r} x{n}" for a, n in sorted(tally.items(), key=lambda t: (-t[1], answers.index(t[0]))))
        if greedy is not None:
            final = self.extract(str(greedy.value))
            how = (f"agreement {agreement:.2f} < threshold {threshold:.2f}: the greedy answer is used"
                   if winner is not None else "no sample gave an answer: the greedy answer is used")
        else:
            final, how = winner, f"agreement {agreement:.2f} >= threshold {threshold:.2f}: the majority answer stands"
        inputs: list[tuple[str, Variable]] = [(f"sample{i + 1}", s) for i, s in enumerate(samples)]
        if greedy is not None:
            inputs.append(("greedy", greedy))
        inputs += [("k", k_param), ("threshold", threshold_param)]
        op = OpRecord(name=f"{self.name}.vote", kind="function", inputs=inputs,
                      description=("Majority vote over the answers of the k samples; when the winner's share of the "
                                   "samples is below the threshold (or no sample answered), the greedy answer is used."))
        text = f"Votes over {len(samples)} samples: {shown or 'none'} ({how}).\nAnswer: {final if final is not None else ''}"
        return Variable(value=text, role="self-consistency answer: the vote and the final 'Answer:' line", op=op)
