"""GSM8K through a two-model cascade (textgrad_core.modules.Cascade): the small model answers with 3 samples and
the large model is called when their agreement is below the threshold. The route (`small`, `large`,
`small->large`) and the threshold are parameters, optimized for quality under a per-question cost budget: an
answer that cost more than `budget_usd` scores 0, whatever it says.

Models: `tiers.<small|large>.model` (null: the forward engine's model) with prices in USD per million tokens (used
when the provider reports no cost, as the simulator does). On the simulator the small model answers from a weaker
world (lower accuracy), so the tiers differ in quality as well as cost (SIMULATION, not LLM results).
`python -m tasks.cascade` prints the cost-quality frontier: quality and cost per route choice.

Data: the shipped GSM8K copy (MIT, tasks/data/gsm8k/LICENSE), split as the gsm8k task splits it.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import weakref
from typing import Any

from textgrad_core.engines import Engine, EngineSet
from textgrad_core.errors import ConfigError
from textgrad_core.loss import MetricResult
from textgrad_core.modules.cascade import Cascade, Tier, frontier
from textgrad_core.task import Example, SimWorld, Splits
from textgrad_core.variable import Parameter, ParameterSet, Variable

from tasks.gsm8k import INITIAL_INSTRUCTION, RUBRIC, GSM8KTask, gsm8k_metric, parse_answer
from tasks.validators import answer_line, declare, fraction

DEFAULT_TIERS = {"small": {"model": None, "price_in": 0.15, "price_out": 0.6},
                 "large": {"model": None, "price_in": 2.5, "price_out": 10.0}}
WEAK_WORLD = {"base_accuracy": 0.2, "max_accuracy": 0.55}  # the simulated small model


class CascadeTask(GSM8KTask):
    """GSM8K by a small->large cascade; numeric match within the cost budget."""

    name = "cascade"

    def __init__(self, tiers: dict[str, dict[str, Any]] | None = None, route: str = "small->large",
                 threshold: float = 0.67, budget_usd: float | None = 0.0005, **options: Any):
        super().__init__(**options)
        self.tiers = {name: dict(DEFAULT_TIERS[name], **(tiers or {}).get(name, {})) for name in DEFAULT_TIERS}
        unknown = sorted(set(tiers or {}) - set(DEFAULT_TIERS))
        if unknown:
            raise ConfigError(f"task.tiers has unknown tier(s) {unknown}: use task.tiers.small and task.tiers.large.")
        self.budget_usd = budget_usd
        self.module = Cascade(["small", "large"], name="cascade", instruction=INITIAL_INSTRUCTION, route=route,
                              threshold=threshold, extract=lambda r: parse_answer(r)[0])
        self._weak: "weakref.WeakKeyDictionary[Engine, Engine]" = weakref.WeakKeyDictionary()
        self.description = f"GSM8K small->large cascade (budget ${budget_usd}/question); " + self.description

    def initial_parameters(self) -> list[Parameter]:
        return declare(self.module.parameters(), {"cascade.instruction": [answer_line()],
                                                  "cascade.threshold": [fraction()]})

    def tier_engines(self, engine: Engine) -> dict[str, Tier]:
        """The two tiers on the forward engine (on the simulator, the small one answers from a weaker world)."""
        small = engine
        if engine.provider == "sim":
            small = self._weak.get(engine)
            if small is None:
                from textgrad_core.engines.sim import SimBackend
                weak = engine.backend.world.model_copy(update=WEAK_WORLD)
                small = Engine(engine.config, SimBackend(engine.config, sim_world=weak), ledger=engine.ledger,
                               call_log=engine.call_log, role=engine.role, cache=engine.cache, events=engine.events)
                self._weak[engine] = small
        return {name: Tier(name, small if name == "small" else engine, cfg["model"], cfg["price_in"], cfg["price_out"])
                for name, cfg in self.tiers.items()}

    async def forward(self, example: Example, params: ParameterSet, engines: EngineSet) -> Variable:
        question = Variable(example.input, role="grade-school math word problem")
        return await self.module.acall(self.tier_engines(engines["forward"]), question, params)

    def metric(self, prediction: Any, example: Example) -> MetricResult:
        """Numeric match of the answer; 0 when the question cost more than the budget (the cost is stated)."""
        if not isinstance(prediction, dict):
            return gsm8k_metric(prediction, example)
        result = gsm8k_metric(prediction["response"], example)
        spent = (f" Route {prediction['route']} called {', '.join(prediction['tiers_called'])} (confidence "
                 f"{prediction['confidence']:.2f}), cost ${prediction['cost_usd']:.6f}.")
        if self.budget_usd is not None and prediction["cost_usd"] > self.budget_usd:
            return MetricResult(score=0.0, feedback=f"Over budget: ${prediction['cost_usd']:.6f} > "
                                f"${self.budget_usd:.6f} per question, so the answer does not count. {result.feedback}{spent}")
        return MetricResult(score=result.score, feedback=result.feedback + spent)

    def sim_world(self, splits: Splits) -> SimWorld:
        world = super().sim_world(splits)
        return world.model_copy(update={"rubric": [i.model_copy(update={"applies_to": ["cascade.instruction"]})
                                                   for i in RUBRIC]})

    async def frontier_report(self, engines: EngineSet, examples: list[Example]) -> list[dict[str, Any]]:
        """Quality (mean correctness, budget aside), within-budget score and mean cost of every route choice on
        `examples`, marked on the cost-quality frontier."""
        params = ParameterSet(self.initial_parameters())
        points = []
        for choice in params["cascade.route"].choices:
            params["cascade.route"].value = choice
            outputs = await asyncio.gather(*(self.forward(e, params, engines) for e in examples))
            correct = [gsm8k_metric(o.value["response"], e).score for o, e in zip(outputs, examples)]
            scored = [self.metric(o.value, e).score for o, e in zip(outputs, examples)]
            costs = [o.value["cost_usd"] for o in outputs]
            points.append({"choice": choice, "quality": sum(correct) / len(examples),
                           "score_within_budget": sum(scored) / len(examples), "cost": sum(costs) / len(examples),
                           "escalated": sum(o.value["escalated"] for o in outputs) / len(examples)})
        return frontier(points)


def main(argv: list[str] | None = None) -> int:
    """Print the cost-quality frontier of the route choices on the simulator (SIMULATION)."""
    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--examples", type=int, default=20, help="validation examples to evaluate each choice on")
    parser.add_argument("--json", help="also write the points to this JSON file")
    args = parser.parse_args(argv)
    task = CascadeTask(n_train=5, n_val=max(args.examples, 1), test_size=1)
    splits = task.checked_splits()
    engines = EngineSet({"forward": {"provider": "sim"}}, sim_world=task.sim_world(splits))
    points = asyncio.run(task.frontier_report(engines, splits.val))
    print("SIMULATION: cost-quality frontier of the cascade's route (offline simulator, not LLM results)")
    print(f"{'choice':<14}{'quality':>9}{'in budget':>11}{'cost/question':>16}{'escalated':>11}  frontier")
    for p in points:
        print(f"{p['choice']:<14}{p['quality']:>9.3f}{p['score_within_budget']:>11.3f}{p['cost']:>16.6f}"
              f"{p['escalated']:>11.2f}  {'yes' if p['on_frontier'] else 'no'}")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as fh:
            json.dump(points, fh, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
