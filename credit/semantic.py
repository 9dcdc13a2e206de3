"""Neighbour-aware semantic backpropagation: backprop whose per-edge call also sees the op's other inputs."""
from __future__ import annotations

from credit import prompts
from credit.backprop import Backprop, render_value
from textgrad_core.variable import Variable


class SemanticBackprop(Backprop):
    """Backprop in which the feedback for one input of an op accounts for the op's other inputs (its siblings).

    Each per-edge prompt lists every other input of the same op with its value (cut at `value_limit`) and whether it
    is trainable, so that the feedback for, e.g., an instruction does not ask for what a sibling few-shot demo already
    provides, and the changes proposed for two trainable siblings fit together. The call count is backprop's.
    """

    name = "semantic"

    def siblings_section(self, op_output: Variable, target: Variable) -> str:
        """The op's other inputs, each with its field, id, role, value and trainable flag (empty when there are none)."""
        op = op_output.op
        assert op is not None
        items = [prompts.SIBLING_ITEM.format(field=field, id=var.id, role=var.role,
                                             trainable="true" if var.requires_grad else "false",
                                             value=render_value(var.value, self.value_limit))
                 for field, var in op.inputs if var is not target]
        return prompts.SEMANTIC_SIBLINGS.format(siblings="\n".join(items)) if items else ""
