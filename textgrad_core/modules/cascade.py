"""A cascade / router (FrugalGPT-style): a cheap model first, escalated to a stronger one when its confidence is low.

The route is a `choice` parameter (e.g. `small`, `large`, `small->large`) and the escalation threshold a number
parameter, so an optimizer trades quality for cost. Confidence is the agreement of `probes` samples of the
cheap model (their majority answer's share). Graph: per tier one LLM node `<name>.<tier>` per sample (fed by the
instruction), one `<name>.route` node fed by every sample, the `route` and `threshold` parameters. The output's
value is a dict: the response, the route taken, the confidence, the tiers called and the cost in USD (from the
provider's price, else the tier's declared price per million tokens, so the simulator's free calls still have a
cost to trade). `frontier` turns (choice, cost, quality) points into the cost-quality frontier.
"""
from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any, Callable

from textgrad_core.engines import Engine, LLMRequest, Message
from textgrad_core.errors import ConfigError
from textgrad_core.modules import prompts
from textgrad_core.modules.base import Module, ParameterSpec, fraction
from textgrad_core.modules.self_consistency import last_answer, vote
from textgrad_core.ops import as_variable
from textgrad_core.variable import OpRecord, ParameterSet, Variable


@dataclass
class Tier:
    """One model of the cascade: the engine that serves it, the model name sent, its price per million tokens."""

    name: str
    engine: Engine
    model: str | None = None  # None: the engine's configured model
    price_in: float = 0.0  # USD per million input tokens, used when the provider reports no cost (the simulator)
    price_out: float = 0.0


class Cascade(Module):
    """Cheap tier first, escalate to the next tier while the confidence is below the threshold."""

    def __init__(self, tiers: list[str], name: str = "cascade", instruction: str = prompts.CASCADE_INSTRUCTION,
                 route: str | None = None, threshold: float = 0.67, probes: int = 3, temperature: float = 0.7,
                 extract: Callable[[str], str | None] = last_answer, max_tokens: int = 1024):
        super().__init__(name)
        if len(tiers) < 2 or len(set(tiers)) != len(tiers):
            raise ConfigError(f"Cascade needs at least two distinct tiers, cheapest first, got {tiers}.")
        self.tiers = list(tiers)
        self.routes = self.tiers + ["->".join(self.tiers)]
        self.initial = {"instruction": instruction, "route": route or self.routes[-1], "threshold": threshold}
        if self.initial["route"] not in self.routes:
            raise ConfigError(f"Cascade route {route!r} is not one of {self.routes}.")
        self.probes, self.temperature, self.extract, self.max_tokens = probes, temperature, extract, max_tokens

    def specs(self) -> list[ParameterSpec]:
        return [
            ParameterSpec("instruction", self.initial["instruction"], "instruction of every model of the cascade"),
            ParameterSpec("route", self.initial["route"], "which model answers: one tier alone, or the cascade that "
                          "escalates from the cheap tier on low confidence", kind="choice",
                          extra={"choices": list(self.routes)}),
            ParameterSpec("threshold", self.initial["threshold"], "least agreement of the cheap model's samples to "
                          "keep its answer; below it the cascade escalates", kind="number",
                          constraints=["A number from 0 to 1."]),
        ]

    async def acall(self, tiers: dict[str, Tier], question: Variable | str,
                    params: ParameterSet | None = None) -> Variable:
        """Answer by the route the parameter chooses; returns the route node (a dict value, see the module doc)."""
        missing = [t for t in self.tiers if t not in tiers]
        if missing:
            raise ConfigError(f"Cascade {self.name}: no Tier given for {missing}.")
        instruction = self.param(params, "instruction")
        route_param, threshold_param = self.param(params, "route"), self.param(params, "threshold")
        route, threshold = str(route_param.value), fraction(threshold_param)
        order = self.tiers if route == self.routes[-1] else [route if route in self.tiers else self.tiers[-1]]
        question = as_variable(question, "question")
        samples: list[Variable] = []
        cost, used, answer, confidence, response = 0.0, [], None, 0.0, ""
        for position, tier_name in enumerate(order):
            tier = tiers[tier_name]
            last = position == len(order) - 1
            count = 1 if last else self.probes  # the last tier answers once: nothing is left to escalate to
            replies = await asyncio.gather(*(self._ask(tier, instruction, question, i if count > 1 else 0)
                                             for i in range(1, count + 1)))
            used.append(tier_name)
            for var, reply_cost in replies:
                samples.append(var)
                cost += reply_cost
            answers = [self.extract(str(v.value)) for v, _ in replies]
            answer, confidence = vote(answers)
            if count == 1 or answer is None:
                response = str(replies[0][0].value)
            else:  # a sample that gave the majority answer speaks for the tier
                response = next(str(v.value) for (v, _), a in zip(replies, answers) if a == answer)
            if last or (answer is not None and confidence >= threshold):
                break
        value = {"response": response, "answer": answer, "route": route, "tiers_called": used,
                 "escalated": len(used) > 1, "confidence": round(confidence, 4), "cost_usd": cost}
        op = OpRecord(name=f"{self.name}.route", kind="function",
                      inputs=[(f"sample{i + 1}", s) for i, s in enumerate(samples)]
                      + [("route", route_param), ("threshold", threshold_param)],
                      description=(f"Route '{route}': the cheap tier answers with {self.probes} samples; when their "
                                   "agreement is below the threshold the next tier answers. Called: "
                                   f"{', '.join(used)}; confidence {confidence:.2f}; cost ${cost:.6f}."))
        self.record(params, str(question.value), response)
        return Variable(value=value, role="the cascade's answer, route, confidence and cost", op=op)

    async def _ask(self, tier: Tier, instruction: Variable, question: Variable, sample_index: int) -> tuple[Variable, float]:
        request = LLMRequest(messages=(Message(role="system", content=str(instruction.value)),
                                       Message(role="user", content=str(question.value))),
                             model=tier.model, temperature=self.temperature if sample_index else 0.0,
                             max_tokens=self.max_tokens, sample_index=sample_index, tag=f"forward:{self.name}.{tier.name}")
        reply = await tier.engine.acomplete(request)
        cost = reply.cost_usd or (reply.usage.input_tokens * tier.price_in + reply.usage.output_tokens * tier.price_out) / 1e6
        op = OpRecord(name=f"{self.name}.{tier.name}", kind="llm",
                      inputs=[("system_prompt", instruction), ("input", question)],
                      description=f"The {tier.name} model answers the question.",
                      prompt=[m.model_dump() for m in request.messages])
        return Variable(value=reply.text, role=f"answer of the {tier.name} model", op=op), cost


def frontier(points: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The points (each {"choice", "cost", "quality", ...}) sorted by cost, each marked `on_frontier` when no other
    point is at least as good in both cost and quality and better in one."""
    out = []
    for p in sorted(points, key=lambda q: (q["cost"], -q["quality"], str(q["choice"]))):
        dominated = any(o is not p and o["cost"] <= p["cost"] and o["quality"] >= p["quality"]
                        and (o["cost"] < p["cost"] or o["quality"] > p["quality"]) for o in points)
        out.append({**p, "on_frontier": not dominated})
    return out
