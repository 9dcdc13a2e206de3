"""Every prompt template of the credit strategies, in one place."""
from __future__ import annotations

BACKPROP_SYSTEM = (
    "You are part of an optimization system that improves an AI pipeline. Given one operation, one of its inputs, "
    "its output and feedback on that output, explain how that input should change so that the output improves: "
    "concrete, actionable feedback for it alone, not a rewrite; for a trainable input, name the guidance or content "
    "it lacks. If the output is already right, say that no change is needed for this input."
)

# The closing line names the target by its field only: its role and trainability are in its <INPUT> tag above.
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
Give feedback for the input '{target_field}'{trainable_note}.
<TARGET id="{target_id}" />"""

OP_PROMPT = """<PROMPT_SENT>
{prompt}
</PROMPT_SENT>"""

# In the quoted prompt of an op, a value that this edge prompt shows in full elsewhere (sent once, not twice).
VALUE_SHOWN_BELOW = "[the value of input '{field}', shown in {where} below]"

# A value of the edge prompt equal to one it showed above (e.g. an op that passes its input through), not repeated.
SAME_AS_INPUT = "(the same value as the input '{field}' above)"
SAME_AS_OUTPUT = "(the same value as the output above)"
SAME_AS_SIBLING = "(the same value as the sibling '{field}' above)"

NO_DESCRIPTION = "(no description)"
# A function op's description is usually its docstring, which the source shown with it already holds.
DESCRIPTION_IN_SOURCE = "(described by the docstring in its source)"

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

AGGREGATE_ITEM = """<SUCCESSOR_FEEDBACK from="{source}">
{text}
</SUCCESSOR_FEEDBACK>"""

SIBLING_ITEM = """<SIBLING field="{field}" id="{id}" role="{role}" trainable="{trainable}">
{value}
</SIBLING>"""

# ---- trace propagation: the serialized minimal subgraph -----------------------------------------------------------
# Optimizers wrap what they are given in <FEEDBACK>, so the trace's own tags avoid that name (no nesting).
# A trace reads like a short program: one line per operation, `vN = op(field=input, ...)`, each value below its
# line prefixed with VALUE_PREFIX (so a value's extent is visible however many lines it has).

TRACE_VALUE_PREFIX = "  | "

TRACE = """<TRACE examples="{n_examples}">
How to read this trace: for each example, every operation on a path from a trainable parameter to the system's
output, in execution order, as `id = operation(field=input id, ...)  # role of the result`, with the value below it
(lines starting with '|'; long values are cut with a visible mark). Parameter ids are their names. An id shown as
`<input>` is a value no trainable parameter influences; the operations that produced it are omitted. A failed
operation shows its error in place. Each example ends with the feedback on its output and its score.
{parameters_section}<OPERATIONS>
{operations}
</OPERATIONS>
{examples}
</TRACE>"""

# Its own template so that an optimizer prompt that lists every parameter itself can leave the whole section out.
TRACE_PARAMETERS = """<PARAMETERS>
{parameters}
</PARAMETERS>
"""

TRACE_PARAMETER = """<PARAMETER id="{id}" kind="{kind}" role="{role}">
{value}
</PARAMETER>"""

TRACE_OPERATION = """<OP name="{name}" kind="{kind}">
{description}{detail}
</OP>"""

TRACE_OP_TEMPLATE = """
template:
{template}"""

TRACE_OP_SOURCE = """
source:
{source}"""

TRACE_OP_SOURCE_IS_INPUT = """
source: the value of its input '{field}'"""

TRACE_EXAMPLE = """<EXAMPLE {attributes}>
{lines}
{end}
</EXAMPLE>"""

TRACE_EXAMPLE_ATTRIBUTES = 'id="{example_id}" score="{score}"'

TRACE_EXAMPLE_END = """output: {output_id}
<OUTPUT_FEEDBACK>
{feedback}
</OUTPUT_FEEDBACK>"""

# A value line for a value the trace already showed: where to find it (no value twice in one prompt).
TRACE_SAME_AS = "(the same value as {id} in example {example_id})"
TRACE_SAME_AS_PARAMETER = "(the same value as parameter {id})"

TRACE_INPUT_LINE = "{id} = <input>  # {role}"

TRACE_OP_LINE = "{id} = {op_name}({arguments})  # {role}"

TRACE_ERROR_LINE = "  ! error in {op_name}: {error}"

TRACE_NO_PATH = "(no trainable parameter influences this example's output)"
