"""Every prompt template of the core library, in one place so they can be read, diffed and ablated."""
from __future__ import annotations

# Delimiters around a new parameter value in optimizer replies: unlikely in real content, easy to find.
NEW_VALUE_OPEN = "<NEW_VALUE>"
NEW_VALUE_CLOSE = "</NEW_VALUE>"

JUDGE_SYSTEM = (
    "You are a careful evaluator. Judge the response against the evaluation instruction. "
    "Be concise and concrete: say what is wrong and why. End with a line 'SCORE: <number between 0 and 1>'."
)

JUDGE_USER = """<EVALUATION_INSTRUCTION>
{instruction}
</EVALUATION_INSTRUCTION>

<QUESTION>
{question}
</QUESTION>

<RESPONSE>
{response}
</RESPONSE>"""

TGD_SYSTEM = (
    "You improve one variable of an AI system (a prompt, an instruction, a piece of code or a number) "
    "using feedback collected on the system's outputs. Make the smallest change that addresses the feedback, "
    "keep what already works, and respect every constraint. "
    f"Write the complete new value between {NEW_VALUE_OPEN} and {NEW_VALUE_CLOSE}, and nothing after it."
)

TGD_USER = """You are updating the variable '{name}' ({role}).

<CURRENT_VALUE>
{value}
</CURRENT_VALUE>
{constraints}{memory}{examples}
Feedback on this variable, grouped by the example that produced it:
<FEEDBACK>
{feedback}
</FEEDBACK>

Write the complete improved value of '{name}' between {open} and {close}."""

TGD_CONSTRAINTS = """
The new value must satisfy these constraints:
<CONSTRAINTS>
{constraints}
</CONSTRAINTS>
"""

TGD_MEMORY = """
Earlier values of this variable and the feedback they received (oldest first):
<PAST_UPDATES>
{memory}
</PAST_UPDATES>
"""

TGD_EXAMPLES = """
Examples of good updates:
<UPDATE_EXAMPLES>
{examples}
</UPDATE_EXAMPLES>
"""

REASK_PARSE = (
    "Your reply could not be used: {error}\n"
    "Reply again with the complete new value between {open} and {close}."
)
