"""The simulator engine (provider `sim`): a deterministic, offline stand-in for an LLM, for tests and demos.

It is NOT a language model and its numbers are NOT LLM results: a plumbing device that checks a system's wiring
end to end, whose rankings of strategies are not evidence (docs/simulator.md). A task gives it a hidden rubric
(kinds of guidance a good instruction contains) and the expected answers. Then:

- forward calls answer correctly with a probability that rises with the rubric items the prompt gives and falls
  with the items it negates or contradicts ("do not double-check", "answer with a random number"; see
  sim_reading), decided by a hash of the example and the prompt (deterministic), in `SimWorld.answer_format`;
- judge calls say whether the answer is right and, when wrong, name guidance the answer did not follow;
- credit calls say "no change is needed" for an output whose feedback is positive, else name a rubric item
  missing from a trainable input, or relay the feedback to a non-trainable one;
- optimizer calls (tgd, joint, opro: one rule for all, `proposed_items`) add the guidance that feedback asking for
  a change names, else a guess; nothing when all feedback says the output is right. They reply in the
  requested format (delimiters or JSON), with a configurable rate of malformed replies.
The kind of call is read from the request's tag ("forward:", "credit:", "optimizer:", "judge:"), which every
traced op of this framework sets.
"""
from __future__ import annotations

import asyncio
import hashlib
import json
import re
from typing import Any

from pydantic import BaseModel, Field

from textgrad_core import prompts
from textgrad_core.engines.config import EngineConfig
from textgrad_core.engines.sim_reading import (FeedbackItem, feedback_by_parameter, feedback_items, guidance_score,
                                               names, sabotaged, scored_values, stance, without_contradictions)
from textgrad_core.engines.types import LLMReply, LLMRequest, Usage


class RubricItem(BaseModel):
    """A kind of guidance a good instruction contains (hidden from everything but the simulator engine)."""

    key: str
    guidance: str  # the sentence the simulated optimizer adds to an instruction
    # Any of these (case-insensitive) in an affirmative clause of a prompt means the guidance is present; inside a
    # "do not / never / avoid / without ..." clause it counts against (docs/simulator.md).
    keywords: list[str]
    hint: str  # how simulated feedback names the missing guidance
    echo: str = ""  # what a simulated answer says when it followed the guidance (lets stages downstream see it)
    # Ids of the parameters this guidance belongs in (e.g. one tool's description); empty: any parameter. Credit
    # and optimizer calls then name and add it only for those parameters; forward calls count it wherever it is.
    applies_to: list[str] = Field(default_factory=list)


class SimWorld(BaseModel):
    """What the simulator engine knows about a task: its rubric and the expected answers."""

    task: str
    rubric: list[RubricItem]
    answers: dict[str, str]  # input text -> expected answer text
    base_accuracy: float = 0.3  # no rubric item given (or as many given as negated)
    max_accuracy: float = 0.95  # every item given
    min_accuracy: float = 0.0  # every item negated or contradicted
    # How every forward reply ends: the answer line a task's parser must read (docs/new-task.md).
    answer_format: str = "Answer: {answer}"
    # Wrong answers: "int" gives a nearby integer, "text" a plausible corruption, or a fixed list to pick from.
    answer_kind: str = "int"
    distractors: list[str] = Field(default_factory=list)
    # A specific wrong answer per input (input text -> answer), used instead of the generic corruption above,
    # e.g. a deliberately broken program for a code-writing task.
    wrong_answers: dict[str, str] = Field(default_factory=dict)

    def accuracy(self, prompt: str) -> float:
        """The chance a forward call with this prompt answers right: from min (every item negated) through base
        (none given) to max (every item given)."""
        n = max(len(self.rubric), 1)
        net = max(-n, min(n, guidance_score(prompt, self.rubric)))
        if net >= 0:
            return self.base_accuracy + (self.max_accuracy - self.base_accuracy) * net / n
        return self.base_accuracy + (self.base_accuracy - self.min_accuracy) * net / n


SIM_NOTICE = ("SIMULATION: scores come from the offline simulator engine, a test and demo device; "
              "they are not LLM results.")
# The chance that an optimizer with negative but unnamed feedback guesses a missing item (else a vague edit).
GUESS_RATE = 0.7


def unit_hash(*parts: Any) -> float:
    """A deterministic number in [0, 1) from the parts."""
    digest = hashlib.sha256("\x1f".join(str(p) for p in parts).encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def _between(text: str, open_tag: str, close_tag: str) -> str | None:
    start = text.find(open_tag)
    if start < 0:
        return None
    end = text.find(close_tag, start + len(open_tag))
    return text[start + len(open_tag):end if end >= 0 else None].strip()


class SimBackend:
    """The simulator backend; see the module docstring."""

    provider = "sim"
    simulated = True

    def __init__(self, config: EngineConfig, sim_world: SimWorld | None = None, **_: Any):
        opts = config.options
        self.seed = int(opts.get("seed", 0))
        self.malformed_rate = float(opts.get("malformed_rate", 0.0))
        self.latency_s = float(opts.get("latency_s", 0.0))
        # How many named guidance items one optimizer reply adds at most (real optimizers make small edits too).
        self.max_edits = int(opts.get("max_edits", 1))
        self.world = sim_world or SimWorld(task="none", rubric=[], answers={})
        self._anchor_index: dict[int, dict[tuple[str, ...], list[str]]] | None = None
        self._options = dict(opts)
        self._world_digest: str | None = None

    def reply_identity(self) -> dict[str, Any]:
        """Everything but the request that decides a reply: the options (seed, malformed rate, ...) and the world."""
        if self._world_digest is None:
            canonical = json.dumps(self.world.model_dump(mode="json"), sort_keys=True, ensure_ascii=False)
            self._world_digest = hashlib.sha256(canonical.encode("utf-8")).hexdigest()
        options = {k: v for k, v in self._options.items() if k != "latency_s"}  # latency never changes a reply
        return {"options": options, "world": self._world_digest}

    # ---- plumbing ------------------------------------------------------------------------
    async def send(self, request: LLMRequest, model: str, timeout: float) -> LLMReply:
        if self.latency_s:
            await asyncio.sleep(self.latency_s)
        kind = request.tag.split(":", 1)[0]
        handler = {"forward": self._forward, "eval": self._forward, "judge": self._judge, "credit": self._credit,
                   "optimizer": self._optimize}.get(kind, self._generic)
        text = handler(request)
        usage = Usage(input_tokens=sum(len(m.content) for m in request.messages) // 4 + 1, output_tokens=len(text) // 4 + 1)
        return LLMReply(text=text, model=model, provider=self.provider, usage=usage, finish_reason="stop")

    def _present(self, text: str) -> list[RubricItem]:
        """Rubric items `text` gives (affirmed, not negated or contradicted)."""
        return [item for item in self.world.rubric if stance(text, item) > 0]

    def _missing(self, text: str, target: str | None = None) -> list[RubricItem]:
        """Rubric items `text` does not give (only those that belong in parameter `target`, when it is given)."""
        present = {i.key for i in self._present(text)}
        return [i for i in self.world.rubric
                if i.key not in present and (target is None or not i.applies_to or target in i.applies_to)]

    def _expected(self, text: str) -> tuple[str, str] | None:
        """(input, expected answer) of the example quoted in the prompt, if the world knows it (longest match wins)."""
        words = text.split()
        found = {q for n, index in self._anchors().items() for i in range(len(words) - n + 1)
                 for q in index.get(tuple(words[i:i + n]), ()) if q in text}
        if not found:  # a question glued to other text (no whitespace before it): scan them all
            found = {q for q in self.world.answers if q and q in text}
        if not found:
            return None
        best = max(found, key=len)
        return best, self.world.answers[best]

    def _anchors(self) -> dict[int, dict[tuple[str, ...], list[str]]]:
        """Questions indexed by their first (up to 5) words, so a lookup is one pass over the prompt's words."""
        if self._anchor_index is None:
            index: dict[int, dict[tuple[str, ...], list[str]]] = {}
            for question in self.world.answers:
                head = tuple(question.split()[:5])
                if head:
                    index.setdefault(len(head), {}).setdefault(head, []).append(question)
            self._anchor_index = index
        return self._anchor_index

    def _wrong(self, expected: str, salt: str) -> str:
        if self.world.distractors:
            options = [d for d in self.world.distractors if d != expected] or self.world.distractors
            return options[int(unit_hash(self.seed, salt, "wrong") * len(options))]
        if self.world.answer_kind == "int":
            try:
                delta = 1 + int(unit_hash(self.seed, salt, "delta") * 3)
                return str(int(expected) + (delta if unit_hash(self.seed, salt, "sign") < 0.5 else -delta))
            except ValueError:
                pass
        words = expected.split()
        if len(words) > 1:
            i = int(unit_hash(self.seed, salt, "swap") * (len(words) - 1))
            words[i], words[i + 1] = words[i + 1], words[i]
            return " ".join(words)
        return expected[::-1] if len(expected) > 1 else "unknown"

    # ---- call kinds ----------------------------------------------------------------------
    def _forward(self, request: LLMRequest) -> str:
        prompt = "\n".join(m.content for m in request.messages)
        found = self._expected(request.user_text)
        # The question is data, not instruction: a "guess" or "never" in a math problem says nothing about the prompt.
        instructions = prompt.replace(found[0], "\n") if found else prompt
        echoes = " ".join(i.echo for i in self._present(instructions) if i.echo)
        if found is None:
            return (f"{echoes} I considered the input carefully.").strip()
        question, expected = found
        p = self.world.accuracy(instructions)
        u = 0.8 * unit_hash(self.seed, "difficulty", question) + 0.2 * unit_hash(self.seed, prompt, request.sample_index)
        answer = expected if u < p else (self.world.wrong_answers.get(question) or self._wrong(expected, question + prompt))
        reasoning = echoes or "I worked through the problem."
        return f"{reasoning}\n{self.world.answer_format.format(answer=answer)}"

    def _judge(self, request: LLMRequest) -> str:
        text = request.user_text
        if "<ACCURACY>" in text:
            return self._accuracy_judge(text)
        response = _between(text, "<RESPONSE>", "</RESPONSE>") or ""
        found = self._expected(_between(text, "<QUESTION>", "</QUESTION>") or text)
        if found is None:
            return "I cannot tell whether the response is right.\nSCORE: 0.5"
        expected = found[1]
        lines = [l for l in response.strip().splitlines() if l.strip()]
        last = lines[-1] if lines else ""
        if re.search(rf"(?<![\w.-]){re.escape(expected)}(?![\w.])", last):
            return "The response is correct.\nSCORE: 1"
        missing = [i for i in self.world.rubric if i.echo and i.echo not in response]
        hint = f" The reasoning did not follow this guidance: {missing[0].hint}" if missing else ""
        return f"The response is incorrect.{hint}\nSCORE: 0"

    @staticmethod
    def _accuracy_judge(text: str) -> str:
        """TextGrad's judge format: labelled fields in, a 0/1 verdict between <ACCURACY> tags out. The ground truth
        is one of the fields, so the simulator compares it with the response's last line."""
        truth = _between(text, "**Ground truth answer**:", "**Reasoning and prediction from the language model**:")
        response = text.split("**Reasoning and prediction from the language model**:", 1)[-1]
        lines = [line for line in response.strip().splitlines() if line.strip()]
        last, truth = (lines[-1] if lines else ""), (truth or "").strip()
        ok = bool(truth) and re.search(rf"(?<![\w.-]){re.escape(truth)}(?![\w.])", last) is not None
        return f"The final prediction {'matches' if ok else 'does not match'} the ground truth.\n<ACCURACY> {int(ok)} </ACCURACY>"

    def _credit(self, request: LLMRequest) -> str:
        text = request.user_text
        feedback = _between(text, "<FEEDBACK_ON_OUTPUT>", "</FEEDBACK_ON_OUTPUT>") or ""
        if not any(i.wrong for i in feedback_items(feedback)):  # every output right: nothing to change
            return "The output is already correct; no change is needed for this input."
        trainable = ", a trainable parameter" in text
        target_id = re.search(r'<TARGET id="([^"]+)"', text)
        target_value = self._input_value(text)
        if trainable and target_value is not None:
            # Neighbour-aware (semantic) prompts list the op's other inputs: guidance a sibling already gives the
            # same op is not asked of the target again.
            siblings = _between(text, "<SIBLINGS>", "</SIBLINGS>") or ""
            present_in_siblings = {i.key for i in self._present(siblings)}
            missing = [i for i in self._missing(target_value, target_id.group(1) if target_id else None)
                       if i.key not in present_in_siblings]
            if not missing:
                return "This input already contains all the guidance it needs; the error comes from elsewhere."
            pick = missing[int(unit_hash(self.seed, "credit", text) * len(missing))]
            return f"This instruction lacks guidance: {pick.hint}"
        # A non-trainable intermediate: relay the downstream feedback (hints included) one hop further up.
        return f"This value contributed to an error downstream ({target_id.group(1) if target_id else '?'}). {feedback}"

    @staticmethod
    def _input_value(text: str) -> str | None:
        """The value of the target input: the one <INPUT> inside <INPUTS> (siblings and quoted prompts are elsewhere)."""
        inputs = _between(text, "<INPUTS>", "</INPUTS>")
        # The tag ends at its line's end: a role may itself contain '>' (e.g. 'reason(observation) -> plan').
        match = re.search(r"<INPUT [^\n]*>\n(.*?)\n</INPUT>", inputs if inputs is not None else text, re.DOTALL)
        return match.group(1) if match else None

    # ---- the optimizers' one rule --------------------------------------------------------
    def proposed_items(self, value: str, evidence: list[FeedbackItem], salt: str, target: str | None = None,
                       suggested: list[RubricItem] = ()) -> list[RubricItem] | None:
        """The guidance an optimizer adds to `value`, the same rule for tgd, joint and opro.

        Items missing from `value` that feedback asking for a change names by its hint (or that `suggested` holds:
        the items of an OPRO history's best values), at most `max_edits`; with feedback asking for a change but
        naming nothing, one guessed missing item (GUESS_RATE of the time; else None: a vague edit); when every item
        of feedback says the output is right, nothing."""
        missing = self._missing(value, target)
        wrong = [e for e in evidence if e.wrong]
        named = [i for i in missing if i in suggested or any(names(e.text, i.hint) for e in wrong)]
        if named or not wrong or not missing:
            return named[: self.max_edits]
        if unit_hash(self.seed, "guess-ok", salt) >= GUESS_RATE:
            return None
        return [missing[int(unit_hash(self.seed, "guess", salt) * len(missing))]]

    def _improve(self, value: str, evidence: list[FeedbackItem], salt: str, target: str | None = None,
                 suggested: list[RubricItem] = ()) -> str:
        """`value` with the proposed guidance added (and the clauses that negated it, or asked for a random
        answer, cut); unchanged when every item of feedback says the output is right."""
        items = self.proposed_items(value, evidence, salt, target, suggested)
        if items == []:
            return value
        new = without_contradictions(value) if sabotaged(value) else value
        for item in items or []:
            new = without_contradictions(new, item)
        if items is None:
            return new.rstrip() + " Think carefully."
        return new.rstrip() + "".join(" " + i.guidance for i in items)

    def _optimize(self, request: LLMRequest) -> str:
        text = request.user_text if len(request.messages) <= 2 else request.messages[1].content
        salt = "\n".join(m.content for m in request.messages)
        if request.sample_index:  # the n samples of a candidate search differ; sample 0 is the plain request
            salt += f"\x1fsample={request.sample_index}"
        if self.malformed_rate and unit_hash(self.seed, "malformed", salt) < self.malformed_rate:
            return "I would improve the variable by being more specific."  # no delimiters: malformed on purpose
        if "<JOINT_UPDATE>" in text:
            return self._joint(text, salt)
        parts = request.tag.split(":", 2)  # per-parameter optimizers tag "optimizer:<name>:<parameter id>"
        target = parts[2] if len(parts) == 3 else None
        feedback = _between(text, "<FEEDBACK>\n", "\n</FEEDBACK>") or ""
        value = _between(text, "<CURRENT_VALUE>\n", "\n</CURRENT_VALUE>")
        if value is not None:
            new = self._improve(value, feedback_items(feedback), salt, target)
        else:  # OPRO-style: start from the best scored value; the history is the feedback
            new = self._opro(_between(text, "<BEST_VALUE>\n", "\n</BEST_VALUE>") or "", feedback, salt, target)
        return f"I will add the guidance the feedback asks for.\n{prompts.NEW_VALUE_OPEN}\n{new}\n{prompts.NEW_VALUE_CLOSE}"

    def _opro(self, best: str, history: str, salt: str, target: str | None) -> str:
        """From the scored history: a best score below 1 is negative evidence; items the best-scoring values give
        (those within 0.05 of the top score) are suggested."""
        scored = scored_values(history)
        if not scored:
            return self._improve(best, [], salt, target)
        top = scored[0][0]
        evidence = [FeedbackItem(f"score {top:.3f}", "negative" if top < 1.0 else "positive")]
        suggested = [i for i in self.world.rubric if any(stance(v, i) > 0 for s, v in scored if s >= top - 0.05)]
        return self._improve(best, evidence, salt, target, suggested)

    def _joint(self, text: str, salt: str) -> str:
        params = json.loads(_between(text, "<PARAMETERS_JSON>", "</PARAMETERS_JSON>") or "{}")
        shared, own = feedback_by_parameter(_between(text, "<FEEDBACK>\n", "\n</FEEDBACK>") or "")
        updates: dict[str, Any] = {}
        for pid in sorted(params):  # JSON order is the prompt's, but a reply must not depend on it
            spec = params[pid]
            if spec.get("kind", "text") != "text":
                continue
            new = self._improve(str(spec.get("value", "")), shared + own.get(pid, []), salt + pid, pid)
            if new != spec.get("value"):
                updates[pid] = new
        return json.dumps({"reasoning": "Adding the guidance the feedback shows is missing.", "updates": updates})

    def _generic(self, request: LLMRequest) -> str:
        return f"[sim] {request.user_text[:200]}"

