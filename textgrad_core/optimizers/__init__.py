"""Optimizers beyond per-parameter TGD (which lives with the protocol in textgrad_core.optimizer)."""
from textgrad_core.optimizers.joint import JointUpdate
from textgrad_core.optimizers.opro import OPRO

__all__ = ["JointUpdate", "OPRO"]
