"""Neighbour-aware semantic backpropagation: backprop whose per-edge call also sees the op's other inputs."""
from __future__ import annotations

from credit.backprop import Backprop
from textgrad_core.variable import Variable


class SemanticBackprop(Backprop):
    """Backprop in which the feedback for one input of an op accounts for the op's other inputs (its siblings).

    Each per-edge prompt lists every other input of the same op with its value (cut head and tail at `value_limit` or the prompt budget) and whether it
    is trainable, so that the feedback for, e.g., an instruction does not ask for what a sibling few-shot demo already
    provides, and the changes proposed for two trainable siblings fit together. The call count is backprop's.
    """

    name = "semantic"

    def sibling_inputs(self, op_output: Variable, target: Variable) -> list[tuple[str, Variable]]:
        """Every other input of the op, in call order (each shown with its field, id, role, value, trainable flag)."""
        op = op_output.op
        assert op is not None
        return [(field, var) for field, var in op.inputs if var is not target]
