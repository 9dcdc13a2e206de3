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

JUDGE_USER_WITH_REFERENCE = """<EVALUATION_INSTRUCTION>
{instruction}
</EVALUATION_INSTRUCTION>

<QUESTION>
{question}
</QUESTION>

<REFERENCE_ANSWER>
{reference}
</REFERENCE_ANSWER>

<RESPONSE>
{response}
</RESPONSE>"""

TGD_SYSTEM = (
    "You improve one variable of an AI system (a prompt, an instruction, a piece of code or a number) "
    "using feedback on the system's outputs. Make the smallest change that addresses the feedback, "
    "keep what already works, and respect every constraint. "
    f"Write the complete new value between {NEW_VALUE_OPEN} and {NEW_VALUE_CLOSE}, and nothing after it."
)

# What to write, and between which delimiters, is said once, in TGD_SYSTEM.
TGD_USER = """You are updating the variable '{name}' ({role}).

<CURRENT_VALUE>
{value}
</CURRENT_VALUE>
{constraints}{contract}{memory}{examples}{context}
Feedback on this variable, grouped by the example that produced it:
<FEEDBACK>
{feedback}
</FEEDBACK>"""

TGD_CONSTRAINTS = """
The new value must satisfy these constraints:
<CONSTRAINTS>
{constraints}
</CONSTRAINTS>
"""

# The contract of a parameter's kind and its mechanical validators: what a value must be to be accepted at all.
TGD_CONTRACT = """
A new value is only accepted if it is:
<VALUE_CONTRACT>
{contract}
</VALUE_CONTRACT>
"""

KIND_CHOICE = "one of these values, written exactly as listed: {choices}"
KIND_DEMOS = ('a JSON list of demonstrations, in the order they are shown: '
              '[{"id": "<training example id>", "input": "...", "output": "..."}, ...]; '
              "you may add, drop, reorder or edit the demonstrations, but every id must be a training example's")
KIND_DEMOS_POOL = "the training examples a demonstration may come from (id, input, output): {pool}"
KIND_DEMOS_IDS = "the ids of the training examples a demonstration may come from: {ids}"
KIND_NUMBER = "a single number, written as digits (e.g. 0.5 or 12)"

# The example each feedback item came from: its input and the system's output (values may be cut head and tail).
TGD_CONTEXT = """
The examples the feedback below refers to (their input, and the system's output on them):
<EXAMPLE_CONTEXT>
{context}
</EXAMPLE_CONTEXT>
"""

# An example's input or output that the prompt already shows elsewhere: where, instead of the text again.
CONTEXT_SHOWN_ELSEWHERE = "(the same text as {where})"
CONTEXT_PART_OF = "the {part} of example {example_id}"

TGD_CONTEXT_ITEM = """<EXAMPLE id="{example_id}">
<EXAMPLE_INPUT>
{input}
</EXAMPLE_INPUT>
<SYSTEM_OUTPUT>
{output}
</SYSTEM_OUTPUT>
</EXAMPLE>"""

# Where a trace's block for a parameter is left out because the prompt shows that value already (no value twice).
PARAMETER_SHOWN_ELSEWHERE = '<PARAMETER id="{id}" kind="{kind}">(its current value is shown above)</PARAMETER>'

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

# ---- joint update (OptoPrime-style): every parameter in one call, a JSON reply -------------------------------
JOINT_SYSTEM = (
    "You improve an AI system by updating several of its variables at once (prompts, instructions, code, numbers), "
    "using the system's execution trace and the feedback on its outputs. Change only what the feedback calls for, "
    "keep what already works, and respect every constraint. Reply with one JSON object and nothing else: "
    '{"reasoning": "<why these changes>", "updates": {"<parameter id>": <complete new value>}}. '
    "List only the parameters you change, by their exact id. A number parameter takes a JSON number, a code "
    "parameter takes the complete Python source as a string, a text parameter takes a string. "
    # A choice or demos parameter's own "contract" says what form its value takes (said once, where it applies).
    'Every value must satisfy its "contract".'
)

JOINT_USER = """<JOINT_UPDATE>
The trainable parameters of the system, by id, with their kind, role, current value and constraints:
<PARAMETERS_JSON>
{parameters}
</PARAMETERS_JSON>

{feedback_intro}
<FEEDBACK>
{feedback}
</FEEDBACK>

Reply with one JSON object {{"reasoning": "...", "updates": {{...}}}}; valid parameter ids: {ids}.
</JOINT_UPDATE>"""

JOINT_FEEDBACK_TRACE = "The execution trace of the system (its operations, inputs and outputs) with the feedback on its outputs:"
JOINT_FEEDBACK_PER_PARAMETER = "Feedback on each parameter, grouped by parameter id and by the example that produced it:"

REASK_JOINT = (
    "Your reply could not be used, so nothing was changed:\n{errors}\n"
    'Reply again with one JSON object {{"reasoning": "...", "updates": {{...}}}} that uses only these parameter ids: '
    "{ids}, with a JSON number for number parameters, Python source that parses for code parameters, one of the "
    "choices for choice parameters, a JSON list of demos for demos parameters, a non-empty string for text "
    "parameters, and every value within its contract."
)

# ---- OPRO: a new value from the scored history of values ---------------------------------------------------
# What the new value must do (differ from all, score higher) is said once, at the end of OPRO_USER, as OPRO does.
OPRO_SYSTEM = (
    "You optimize one variable of an AI system (a prompt, an instruction, a piece of code or a number). You see "
    "values tried so far with the score the system reached with each. Respect every constraint. "
    f"Write the complete new value between {NEW_VALUE_OPEN} and {NEW_VALUE_CLOSE}, and nothing after it."
)

OPRO_USER = """You are proposing a new value for the variable '{name}' ({role}).
{constraints}{contract}
Values of this variable tried so far, with the score the system reached with each (mean over a minibatch, \
higher is better), sorted from the lowest score to the highest:
<FEEDBACK>
{history}
</FEEDBACK>

The best value so far:
<BEST_VALUE>
{best}
</BEST_VALUE>

Write a new value of '{name}' that differs from every value above and scores higher than all of them, \
complete, between {open} and {close}."""

OPRO_HISTORY_ITEM = """<VALUE score="{score:.3f}">
{value}
</VALUE>"""
