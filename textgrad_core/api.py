"""The public Python API behind `import textgrad_core as tc`: engines from one call, `backward` by any credit
strategy on the recorded graphs, credit strategies and optimizers by name or import path. Sync and async alike:
every blocking call has an `a...` twin (`backward` / `abackward`), and the blocking ones work inside a running
event loop too (a notebook), through `engines.run_sync`.

A script's loop:

    eng = tc.engine("sim")
    opt = tc.TGD(params, engine=eng)
    losses = [loss_fn(system(x), x) for x in batch]     # traced ops record the graphs
    tc.backward(losses, credit="backprop", engine=eng)   # credit for every parameter the losses depend on
    opt.step()                                            # consumes that credit: new parameter versions
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Iterable, Mapping

from textgrad_core import registry
from textgrad_core.engines import Engine, build_engine, run_sync
from textgrad_core.engines.sim import RubricItem, SimWorld
from textgrad_core.errors import ConfigError
from textgrad_core.variable import Parameter, Variable

if TYPE_CHECKING:
    from textgrad_core.credit import CreditResult

# The credit and graph modules (and networkx under them) are imported by backward(), not here: loss.py imports
# this module, so every task and script would otherwise load networkx before its first forward call.

# The simulator's world for a script without a task: three generic kinds of guidance, so that simulated credit
# names what an instruction lacks and the simulated optimizer adds it. It knows no answers: forward calls never
# answer correctly. A stand-in for demos and tests, not a language model.
GENERIC_SIM_WORLD = SimWorld(task="generic", answers={}, rubric=[
    RubricItem(key="steps", guidance="Reason step by step before answering.", keywords=["step by step"],
               hint="the instruction does not ask to reason step by step", echo="I reasoned step by step."),
    RubricItem(key="final_line", guidance="Give the final answer on its own last line.", keywords=["own last line"],
               hint="the instruction does not say where the final answer goes"),
    RubricItem(key="check", guidance="Check the answer against the question before replying.",
               keywords=["check the answer"], hint="the instruction does not ask to check the answer"),
])


def engine(spec: str | Mapping[str, Any] | None = None, /, *, provider: str | None = None, model: str | None = None,
           base_url: str | None = None, sim_world: SimWorld | None = None, **settings: Any) -> Engine:
    """An engine from a provider name (`engine("sim")`), keywords (`engine(provider="openai", model=..., base_url=...)`)
    or a config mapping (the `engine:` block of a run config); keywords override the mapping.

    Other keywords are EngineConfig fields (api_key_env, max_concurrency, timeout, max_retries, cache={...},
    options={...}). A simulator engine uses `sim_world` (a task's `sim_world(splits)`), else a generic world.
    """
    if isinstance(spec, Mapping):
        config = dict(spec)
    elif isinstance(spec, str):
        config = {"provider": spec}
    elif spec is None:
        config = {}
    else:
        raise ConfigError(f"engine() takes a provider name or a config mapping, got {type(spec).__name__}.")
    config.update({k: v for k, v in {"provider": provider, "model": model, "base_url": base_url}.items() if v is not None})
    config.update(settings)
    config.setdefault("provider", "sim")
    if config["provider"] not in ("sim", "scripted") and "model" not in config:
        raise ConfigError(f"engine(provider={config['provider']!r}) needs model=..., e.g. model='gpt-4o-mini'.")
    world = sim_world if sim_world is not None else GENERIC_SIM_WORLD
    return build_engine(config, **({"sim_world": world} if config["provider"] == "sim" else {}))


def credit_strategy(name: str, **options: Any) -> Any:
    """A credit strategy by name (`"backprop"`, `"semantic"`, `"trace"`, `"outcome"`, `"adaptive"`, or any registered)
    or by import path (`"my_pkg.module.MyCredit"`), built with `options`."""
    key = "_target_" if ("." in name or ":" in name) else "name"
    return registry.build("credit", {key: name, **options})


def optimizer(name: str, params: Any = None, *, engine: Engine | None = None, **options: Any) -> Any:
    """An optimizer by name (`"tgd"`, `"joint"`, `"opro"`, or any registered) or import path, built with `options`;
    `params` and `engine` make its script `step()` usable."""
    key = "_target_" if ("." in name or ":" in name) else "name"
    opt = registry.build("optimizer", {key: name, **options})
    if params is not None or engine is not None:
        if not hasattr(opt, "_bind"):
            raise ConfigError(f"optimizer '{name}' has no script step(): use it through the trainer, or subclass "
                              "textgrad_core.optimizers.base.ScriptStepping.")
        opt._bind(params, engine)
    return opt


def credit_strategies() -> list[str]:
    """The names of every known credit strategy."""
    return list(registry.names("credit"))


def optimizer_names() -> list[str]:
    """The names of every known optimizer."""
    return list(registry.names("optimizer"))


async def abackward(losses: Variable | Iterable[Variable], credit: Any = "backprop", engine: Engine | None = None,
                    params: Any = None, example_ids: list[str] | None = None, **options: Any) -> CreditResult:
    """Credit assignment on the graphs the losses were computed on; returns the CreditResult.

    Each loss is one example: its graph is walked from the loss through the recorded ops (no trace objects to
    build), its output is the loss's `prediction` input. `credit` is a strategy name or import path (built with
    `options`) or an instance. `params`: the parameters to credit (default: every Parameter the losses depend on).
    The result is also left on those parameters for an optimizer's `step()`. Variable ids are renumbered from the
    graphs' structure first (`graph.canonicalize_ids`), so the prompts are the same in any process.
    """
    batch = [losses] if isinstance(losses, Variable) else list(losses)
    if not batch:
        raise ConfigError("backward() got no losses: pass a loss Variable or a list of them.")
    for loss in batch:
        if not isinstance(loss, Variable):
            raise ConfigError(f"backward() takes loss Variables (from MetricLoss, JudgeLoss or a traced op), "
                              f"got {type(loss).__name__}.")
    if isinstance(credit, str):
        strategy = credit_strategy(credit, **options)
    elif options:
        raise ConfigError(f"backward(): options {sorted(options)} apply to a strategy given by name; "
                          "pass them to the strategy's constructor instead.")
    else:
        strategy = credit
    for attr in ("assign", "kind"):
        if not hasattr(strategy, attr):
            raise ConfigError(f"backward(credit=...) needs a credit strategy (name, kind, async assign), "
                              f"got {type(strategy).__name__} without '{attr}'.")
    from textgrad_core.credit import traces_from_losses

    traces = traces_from_losses(batch, example_ids)
    targets = _parameters(params, batch)
    result = await strategy.assign(traces, targets, engine if engine is not None else _NoEngine(strategy))
    for p in targets:
        p.pending_credit.append(result)
    return result


def backward(losses: Variable | Iterable[Variable], credit: Any = "backprop", engine: Engine | None = None,
             params: Any = None, example_ids: list[str] | None = None, **options: Any) -> CreditResult:
    """Synchronous twin of `abackward`."""
    return run_sync(abackward(losses, credit=credit, engine=engine, params=params, example_ids=example_ids, **options))


def _parameters(params: Any, losses: list[Variable]) -> list[Parameter]:
    """The given parameters, or every Parameter the losses depend on, in the order the walk first meets them."""
    if isinstance(params, Parameter):
        return [params]
    if params is not None:
        found = list(params)
        bad = [type(p).__name__ for p in found if not isinstance(p, Parameter)]
        if bad:
            raise ConfigError(f"params= takes Parameters (or a ParameterSet), got {bad[0]}.")
        return found
    from textgrad_core.graph import post_order

    found, seen = [], set()
    for loss in losses:
        for var in post_order(loss):
            if isinstance(var, Parameter) and id(var) not in seen:
                seen.add(id(var))
                found.append(var)
    names = [p.id for p in found]
    if len(set(names)) != len(names):
        dup = next(n for n in names if names.count(n) > 1)
        raise ConfigError(f"Two different parameters are named '{dup}' in these graphs: parameter names must be unique.")
    return found


class _NoEngine:
    """Stands in when backward() got no engine: fine for strategies that make no call, one clear error otherwise."""

    simulated = False

    def __init__(self, strategy: Any):
        self._name = getattr(strategy, "name", type(strategy).__name__)

    async def acomplete(self, request: Any) -> Any:
        raise ConfigError(f"credit strategy '{self._name}' makes LLM calls: pass engine=... to backward().")

    def complete(self, request: Any) -> Any:
        raise ConfigError(f"credit strategy '{self._name}' makes LLM calls: pass engine=... to backward().")


__all__ = ["GENERIC_SIM_WORLD", "abackward", "backward", "credit_strategies", "credit_strategy",
           "engine", "optimizer", "optimizer_names"]
