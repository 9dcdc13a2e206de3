"""The simulator engine (provider `sim`): a deterministic, offline stand-in for an LLM, for tests and demos.

It is NOT a language model and its numbers are NOT LLM results. A task gives it a hidden rubric (kinds of
guidance a good instruction contains) and the expected answers. Then:

- forward calls answer correctly with a probability that rises with the rubric items present in the prompt,
  decided by a hash of the example and the prompt (so it is deterministic, and an instruction that holds more
  guidance helps every example);
- judge calls say whether the answer is right and, when wrong, name guidance the answer did not follow;
- credit calls name a rubric item missing from a trainable input, or relay the feedback to a non-trainable one;
- optimizer calls add the guidance named in their feedback (or, given only a trace or scores, a guess) and reply
  in the requested format (delimiters or JSON), with a configurable rate of malformed replies.
The kind of call is read from the request's tag ("forward:", "credit:", "optimizer:", "judge:"), which every
traced op of this framework sets.
"""
from __future__ import annotations

import asyncio
import hashlib
import json
import re
from typing import Any

from textgrad_core import prompts
from textgrad_core.engines.config import EngineConfig
from textgrad_core.engines.types import LLMReply, LLMRequest, Usage
from pydantic import BaseModel, Field

class RubricItem(BaseModel):
    """A kind of guidance a good instruction contains (hidden from everything but the simulator engine)."""

    key: str
    guidance: str  # the sentence the simulated optimizer adds to an instruction
    keywords: list[str]  # any of these (case-insensitive) in a prompt means the guidance is present
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
    base_accuracy: float = 0.3
    max_accuracy: float = 0.95
    answer_format: str = "Answer: {answer}"
    # Wrong answers: "int" gives a nearby integer, "text" a plausible corruption, or a fixed list to pick from.
    answer_kind: str = "int"
    distractors: list[str] = Field(default_factory=list)
    # A specific wrong answer per input (input text -> answer), used instead of the generic corruption above,
    # e.g. a deliberately broken program for a code-writing task.
    wrong_answers: dict[str, str] = Field(default_factory=dict)



SIM_NOTICE = "SIMULATION: replies come from the offline simulator engine, not from a language model."


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
        low = text.lower()
        return [item for item in self.world.rubric if any(k.lower() in low for k in item.keywords)]

    def _missing(self, text: str, target: str | None = None) -> list[RubricItem]:
        """Rubric items absent from `text` (only those that belong in parameter `target`, when it is given)."""
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
        present = self._present(prompt)
        echoes = " ".join(i.echo for i in present if i.echo)
        found = self._expected(request.user_text)
        if found is None:
            return (f"{echoes} I considered the input carefully.").strip()
        question, expected = found
        rubric_size = max(len(self.world.rubric), 1)
        p = self.world.base_accuracy + (self.world.max_accuracy - self.world.base_accuracy) * len(present) / rubric_size
        u = 0.8 * unit_hash(self.seed, "difficulty", question) + 0.2 * unit_hash(self.seed, prompt, request.sample_index)
        answer = expected if u < p else (self.world.wrong_answers.get(question) or self._wrong(expected, question + prompt))
        reasoning = echoes or "I worked through the problem."
        return f"{reasoning}\n{self.world.answer_format.format(answer=answer)}"

    def _judge(self, request: LLMRequest) -> str:
        text = request.user_text
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

    def _credit(self, request: LLMRequest) -> str:
        text = request.user_text
        feedback = _between(text, "<FEEDBACK_ON_OUTPUT>", "</FEEDBACK_ON_OUTPUT>") or ""
        if _is_positive(feedback):
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

    def _improve(self, value: str, feedback: str, salt: str, target: str | None = None) -> str:
        """Add the guidance the feedback names; with no named guidance, guess one missing item."""
        missing = self._missing(value, target)
        named = [i for i in missing if i.hint in feedback or i.key in feedback]
        if not named and missing and not _is_positive(feedback):
            guess = missing[int(unit_hash(self.seed, "guess", salt) * len(missing))]
            named = [guess] if unit_hash(self.seed, "guess-ok", salt) < 0.7 else []
            if not named:
                return value.rstrip() + " Think carefully."
        return value.rstrip() + "".join(" " + i.guidance for i in named[: self.max_edits])

    def _optimize(self, request: LLMRequest) -> str:
        text = request.user_text if len(request.messages) <= 2 else request.messages[1].content
        salt = "\n".join(m.content for m in request.messages)
        if request.sample_index:  # the n samples of a candidate search differ; sample 0 is the plain request
            salt += f"\x1fsample={request.sample_index}"
        if self.malformed_rate and unit_hash(self.seed, "malformed", salt) < self.malformed_rate:
            return "I would improve the variable by being more specific."  # no delimiters: malformed on purpose
        if "<JOINT_UPDATE>" in text:
            return self._joint(text, salt)
        value = _between(text, "<CURRENT_VALUE>\n", "\n</CURRENT_VALUE>")
        if value is None:  # OPRO-style: start from the best scored value
            value = _between(text, "<BEST_VALUE>\n", "\n</BEST_VALUE>") or ""
        feedback = _between(text, "<FEEDBACK>", "</FEEDBACK>") or ""
        parts = request.tag.split(":", 2)  # per-parameter optimizers tag "optimizer:<name>:<parameter id>"
        new = self._improve(value, feedback, salt, parts[2] if len(parts) == 3 else None)
        return f"I will add the guidance the feedback asks for.\n{prompts.NEW_VALUE_OPEN}\n{new}\n{prompts.NEW_VALUE_CLOSE}"

    def _joint(self, text: str, salt: str) -> str:
        params = json.loads(_between(text, "<PARAMETERS_JSON>", "</PARAMETERS_JSON>") or "{}")
        feedback = _between(text, "<FEEDBACK>", "</FEEDBACK>") or text
        updates: dict[str, Any] = {}
        for pid, spec in params.items():
            if spec.get("kind", "text") != "text":
                continue
            new = self._improve(str(spec.get("value", "")), feedback, salt + pid, pid)
            if new != spec.get("value"):
                updates[pid] = new
        return json.dumps({"reasoning": "Adding the guidance the trace shows is missing.", "updates": updates})

    def _generic(self, request: LLMRequest) -> str:
        return f"[sim] {request.user_text[:200]}"


def _is_positive(feedback: str) -> bool:
    head = feedback.strip().lower()
    return head.startswith("correct") or head.startswith("the response is correct")
