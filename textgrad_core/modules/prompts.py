"""Every prompt template of the modules, in one place (initial instructions, step templates)."""

COT_INSTRUCTION = ("Think step by step. The last line of your response should be of the form 'Answer: <answer>'.")

RAG_QUERY_INSTRUCTION = ("Write a search query that finds a passage needed to answer the question. "
                         "Reply with one line of the form 'Query: <search query>'.")
RAG_FOLLOWUP_INSTRUCTION = ("Given the question and the passages found so far, write a search query for the "
                            "information still missing. Reply with one line of the form 'Query: <search query>'.")
RAG_READER_INSTRUCTION = ("Answer the question using the passages. Think step by step; the last line of your "
                          "response should be of the form 'Answer: <answer>'.")
RAG_QUERY_TEMPLATE = "Question:\n{question}"
RAG_FOLLOWUP_TEMPLATE = "Question:\n{question}\n\nPassages found so far:\n{passages}"
RAG_READER_TEMPLATE = "Passages:\n{passages}\n\nQuestion:\n{question}"

CODE_GENERATOR_INSTRUCTION = ("You are an expert Python programmer. Implement the function described by the "
                              "prompt. Reply with the complete function in a single ```python code block.")

AGENT_INSTRUCTION = (
    "Answer the question with the help of the tools. At each step write 'Thought: <reasoning>' and then either "
    "'Action: <tool name>[<input>]' to use a tool, or 'Answer: <answer>' when you know the answer.")
AGENT_STEP_TEMPLATE = "Tools:\n{tools}\n\nQuestion:\n{question}\n\nSteps so far:\n{scratchpad}"

SYMBOLIC_INSTRUCTION = ("Solve the problem. Think step by step. The last line of your response should be of the "
                        "form 'Answer: <value>'.")
SYMBOLIC_RETRY_TEMPLATE = """Problem:
{problem}

Your previous answer:
{previous}

A symbolic checker (sympy) rejected it:
{verdict}

Solve the problem again. The last line of your response should be of the form 'Answer: <value>'."""

CASCADE_INSTRUCTION = COT_INSTRUCTION

MEDPROMPT_INSTRUCTION = ("Answer the multiple-choice question. Think step by step, then give the letter of the "
                         "correct option on the last line, in the form 'Answer: <letter>'.")
MEDPROMPT_TEMPLATE = "Solved examples:\n{demos}\n\nQuestion:\n{question}\n\nOptions:\n{options}"

# The static-analysis optimizer (textgrad_core/optimizers/static.py): it sees the system's structure, never a run.
STATIC_SYSTEM = (
    "You improve one parameter of an AI system by static analysis: you read how the system is built (the module "
    "that uses the parameter, its description and source) and a few inputs it will receive, WITHOUT any output, "
    "score or feedback from running it. Anticipate what those inputs need. Write the complete new value between "
    "{open} and {close}, and nothing after it.")
STATIC_USER = """<PARAMETER name="{name}" kind="{kind}">
Role: {role}
{constraints}<CURRENT_VALUE>
{value}
</CURRENT_VALUE>
</PARAMETER>

<STRUCTURE>
{structure}
</STRUCTURE>

<TRAINING_INPUTS>
{inputs}
</TRAINING_INPUTS>

Propose a better value for {name}: one that serves these kinds of input, given how the system uses it."""
