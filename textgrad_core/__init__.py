"""textgrad-core: LLM-based optimization of compound AI systems.

`import textgrad_core as tc` gives the whole loop: parameters and traced ops (`tc.Parameter`, `tc.LLMCall`,
`tc.FormattedLLMCall`, `tc.traced`, `tc.join`), engines (`tc.engine("sim")`), losses (`tc.MetricLoss`,
`tc.JudgeLoss`), credit by any strategy (`tc.backward(losses, credit="trace")`), optimizers (`tc.TGD`,
`tc.JointUpdate`, `tc.OPRO`, `tc.optimizer("tgd")`), tasks (`tc.Task`, `tc.Example`, `tc.Splits`) and errors.
Names are imported on first use (PEP 562), so a plain `import textgrad_core` loads no SDK, networkx or pydantic.
"""
from __future__ import annotations

import importlib
from typing import Any

_EXPORTS: dict[str, str] = {
    # variables and the recorded graph
    "Variable": "variable", "Parameter": "variable", "ParameterSet": "variable", "Tape": "variable",
    "ParameterVersion": "variable", "Graph": "graph", "canonicalize_ids": "graph",
    # traced ops
    "LLMCall": "ops", "FormattedLLMCall": "ops", "traced": "ops", "join": "ops", "call_code": "ops",
    # losses
    "Loss": "loss", "MetricLoss": "loss", "MetricResult": "loss", "JudgeLoss": "loss", "parse_score": "loss",
    # tasks
    "Task": "task", "Example": "task", "Splits": "task",
    # engines
    "Engine": "engines", "EngineSet": "engines", "LLMRequest": "engines", "LLMReply": "engines", "run_sync": "engines",
    "SimWorld": "engines.sim", "RubricItem": "engines.sim",
    # credit
    "CreditResult": "credit", "ExampleTrace": "credit", "ParameterFeedback": "credit", "CreditAssigner": "credit",
    # optimizers
    "TGD": "optimizers", "JointUpdate": "optimizers", "OPRO": "optimizers", "Optimizer": "optimizers",
    "UpdateEvent": "optimizers",
    # the functions of the API
    "engine": "api", "backward": "api", "abackward": "api", "optimizer": "api", "credit_strategy": "api",
    "credit_strategies": "api", "optimizer_names": "api",
    # errors
    "TextgradError": "errors", "ConfigError": "errors", "MissingAPIKeyError": "errors", "ProviderError": "errors",
    "MalformedReplyError": "errors", "BudgetExceeded": "errors", "CacheError": "errors", "ParseError": "errors",
}

__all__ = sorted([*_EXPORTS, "__version__"])


def _version() -> str:
    try:
        from importlib.metadata import PackageNotFoundError, version
        try:
            return version("textgrad-core")
        except PackageNotFoundError:
            pass
    except ImportError:  # pragma: no cover - importlib.metadata is in every supported Python
        pass
    return "0+unknown"  # running from a source tree that was never installed


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        module = importlib.import_module(f"{__name__}.{_EXPORTS[name]}")
        value = getattr(module, name)
        globals()[name] = value  # later lookups skip this function
        return value
    if name == "__version__":
        globals()[name] = value = _version()
        return value
    if not name.startswith("_"):
        try:  # submodules and subpackages: tc.errors, tc.optimizers, tc.engines, ...
            return importlib.import_module(f"{__name__}.{name}")
        except ModuleNotFoundError as exc:
            if exc.name != f"{__name__}.{name}":
                raise
    raise AttributeError(f"module 'textgrad_core' has no attribute '{name}'")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
