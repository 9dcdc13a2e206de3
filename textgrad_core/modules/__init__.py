"""Compound-system archetypes as optimizable modules, one file each, each a traced component that declares its
trainable parameters: self-consistency (`SelfConsistency`), RAG and multi-hop RAG (`RAG`, `MultiHopRAG`),
sample-and-filter (`SampleAndFilter`), a ReAct tool agent (`ToolAgent`, `Tool`), an LLM with a symbolic checker
(`SymbolicChecker`), a cascade / router (`Cascade`, `Tier`, `frontier`) and a Medprompt-style ensemble
(`Medprompt`). See docs/modules.md. Names are imported on first use, so importing this package loads neither
bm25s nor sympy.
"""
from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "Module": "base", "ParameterSpec": "base",
    "SelfConsistency": "self_consistency",
    "RAG": "rag", "MultiHopRAG": "rag",
    "SampleAndFilter": "sample_filter",
    "ToolAgent": "tool_agent", "Tool": "tool_agent",
    "SymbolicChecker": "symbolic", "check_equation": "symbolic",
    "Cascade": "cascade", "Tier": "cascade", "frontier": "cascade",
    "Medprompt": "medprompt",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        value = getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'textgrad_core.modules' has no attribute '{name}'")
