"""Every prompt template of the credit strategies, in one place."""
from __future__ import annotations

BACKPROP_SYSTEM = (
    "You are part of an optimization system that improves an AI pipeline. You receive one operation of the "
    "pipeline, its inputs, its output, and feedback on that output. Explain how ONE of the inputs should change "
    "so that the output improves. Give concrete, actionable feedback for that input only; do not rewrite it. "
    "Feedback on a trainable input should name what guidance or content it lacks."
)

BACKPROP_USER = """<OPERATION name="{op_name}" kind="{op_kind}">
{op_description}
</OPERATION>
{op_detail}
<INPUTS>
{inputs}
</INPUTS>

<OUTPUT role="{output_role}">
{output}
</OUTPUT>

<FEEDBACK_ON_OUTPUT>
{feedback}
</FEEDBACK_ON_OUTPUT>
{siblings}
Give feedback for the input '{target_field}' ({target_role}){trainable_note}.
<TARGET id="{target_id}" />"""

OP_PROMPT = """<PROMPT_SENT>
{prompt}
</PROMPT_SENT>"""

OP_SOURCE = """<SOURCE>
{source}
</SOURCE>"""

OP_ERROR = """<ERROR>
{error}
</ERROR>"""

INPUT_ITEM = """<INPUT field="{field}" role="{role}"{trainable}>
{value}
</INPUT>"""

SEMANTIC_SIBLINGS = """
The same operation has these other inputs; account for them, since the change to the target input must work together with them:
<SIBLINGS>
{siblings}
</SIBLINGS>
"""

AGGREGATE_ITEM = """<FEEDBACK from="{source}">
{text}
</FEEDBACK>"""
