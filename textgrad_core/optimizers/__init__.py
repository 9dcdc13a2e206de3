"""Optimizers: the protocol (base), textual gradient descent (tgd), the joint trace update (joint) and OPRO (opro)."""
from textgrad_core.optimizers.base import Optimizer, Proposal, ProposingOptimizer, UpdateEvent, apply_proposal
from textgrad_core.optimizers.joint import JointUpdate
from textgrad_core.optimizers.opro import OPRO
from textgrad_core.optimizers.tgd import TGD

__all__ = ["JointUpdate", "OPRO", "Optimizer", "Proposal", "ProposingOptimizer", "TGD", "UpdateEvent", "apply_proposal"]
