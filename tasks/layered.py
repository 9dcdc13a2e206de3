"""A layered graph of LLM nodes (2 layers x 2 nodes feeding a final solver) on GSM8K or BBH object counting.

Every node has its own trainable instruction (5 parameters). Layer-1 nodes read the question; layer-2 nodes read
the question and both layer-1 outputs; the solver reads the question and both layer-2 outputs. Each field is a
separate input of a FormattedLLMCall, so credit can tell the contributions apart (the setting of neighbour-aware
semantic backpropagation, compared with TextGrad's backprop and OptoPrime's trace).
"""
from __future__ import annotations

import asyncio
from typing import Any

from tasks.bbh_object_counting import RUBRIC as BBH_RUBRIC
from tasks.bbh_object_counting import ObjectCountingTask, parse_integer_answer
from tasks.gsm8k import RUBRIC as GSM8K_RUBRIC
from tasks.gsm8k import GSM8KTask
from textgrad_core.engines import EngineSet
from textgrad_core.errors import ConfigError
from textgrad_core.loss import MetricResult
from textgrad_core.ops import FormattedLLMCall
from tasks.protocols import STRICT, choose_protocol
from tasks.validators import answer_line
from textgrad_core.task import Example, RubricItem, SimWorld, Splits, Task, check_fits, check_size
from textgrad_core.variable import Parameter, ParameterSet, Variable

LAYER1_TEMPLATE = """Question:
{question}"""

LAYER2_TEMPLATE = """Question:
{question}

Notes from analyst A:
{note_a}

Notes from analyst B:
{note_b}"""

SOLVER_TEMPLATE = """Question:
{question}

Worked solution 1:
{solution_a}

Worked solution 2:
{solution_b}"""

ANSWER_FORMAT = "The last line of your response should be of the following format: 'Answer: $VALUE' where VALUE is a numerical value."

INITIAL_INSTRUCTIONS = {
    "layer1_a.instruction": "Read the question and write down the facts and numbers it states. Do not solve it yet.",
    "layer1_b.instruction": "Read the question and explain what exactly it asks for and which operations lead there. "
                            "Do not solve it yet.",
    "layer2_a.instruction": "Using the question and both analysts' notes, solve the problem step by step.",
    "layer2_b.instruction": "Using the question and both analysts' notes, point out mistakes or gaps in the notes, "
                            "then solve the problem step by step.",
    "solver.instruction": "Compare the two worked solutions with the question and give the final answer. "
                          + ANSWER_FORMAT,
}

ROLES = {
    "layer1_a.instruction": "instruction of layer-1 node A, which extracts the facts of the question",
    "layer1_b.instruction": "instruction of layer-1 node B, which works out what the question asks",
    "layer2_a.instruction": "instruction of layer-2 node A, which solves the question from the layer-1 notes",
    "layer2_b.instruction": "instruction of layer-2 node B, which checks the layer-1 notes and solves the question",
    "solver.instruction": "instruction of the final solver, which answers from the two layer-2 solutions",
}

BASES = {"gsm8k": (GSM8KTask, GSM8K_RUBRIC), "bbh_object_counting": (ObjectCountingTask, BBH_RUBRIC)}


# In the simulator, the i-th rubric item of the base task belongs in these nodes' instructions: credit has to reach
# the right node, upstream ones included, for the final answer to improve.
HOMES = [["layer1_a.instruction"], ["layer1_b.instruction"], ["layer2_a.instruction"],
         ["layer2_b.instruction", "solver.instruction"]]


def layered_rubric(rubric: list[RubricItem]) -> list[RubricItem]:
    """The base rubric with each item's echo as a keyword too (guidance followed upstream counts in every later
    prompt) and each item assigned to a node (HOMES, cycling when the rubric is longer)."""
    out = []
    for i, item in enumerate(rubric):
        echo = item.echo.strip().strip("()").rstrip(".")
        keywords = item.keywords + ([echo] if echo and echo not in item.keywords else [])
        out.append(item.model_copy(update={"keywords": keywords, "applies_to": HOMES[i % len(HOMES)]}))
    return out


class LayeredTask(Task):
    """Five LLM nodes in three layers with one trainable instruction each; data, splits and metric of the base task."""

    name = "layered"
    description = "A 2x2 layered graph of LLM nodes feeding a solver (5 instructions), on GSM8K or BBH object counting."

    def __init__(self, base: str = "gsm8k", data_dir: str | None = None, n_train: int | None = None,
                 n_val: int | None = None, test_size: int | None = None, protocol: str = STRICT):
        self.protocol = choose_protocol(self.name, protocol, (STRICT,))
        if base not in BASES:
            raise ConfigError(f"Unknown task.base '{base}' for the layered task; use one of {', '.join(BASES)}.")
        check_size("n_train", n_train, optional=True)
        check_size("n_val", n_val, optional=True)
        check_size("test_size", test_size, optional=True)
        self.base = base
        cls, self.base_rubric = BASES[base]
        # Unset sizes keep the base task's published split.
        options = {k: v for k, v in {"data_dir": data_dir, "n_train": n_train, "n_val": n_val}.items() if v is not None}
        self.base_task: Task = cls(**options)
        self.test_size = test_size
        self.description = f"{self.description} Base: {base}."

    def info(self) -> dict[str, Any]:
        return {**super().info(), "protocol": self.protocol}

    def load_splits(self) -> Splits:
        """The base task's splits, the test split cut to `test_size` when set."""
        splits = self.base_task.load_splits()
        if self.test_size is not None:
            check_fits({"test_size": self.test_size}, len(splits.test), f"the test split of task {self.base}")
        return splits if not self.test_size else Splits(train=splits.train, val=splits.val,
                                                        test=splits.test[: self.test_size])

    def initial_parameters(self) -> list[Parameter]:
        return [Parameter(value=value, name=name, role=ROLES[name],
                          constraints=["Keep the required final line format 'Answer: $VALUE'."]
                          if name == "solver.instruction" else [],
                          validators=[answer_line()] if name == "solver.instruction" else [])
                for name, value in INITIAL_INSTRUCTIONS.items()]

    async def forward(self, example: Example, params: ParameterSet, engines: EngineSet) -> Variable:
        engine = engines["forward"]
        question = Variable(example.input, role="question")

        def node(name: str, template: str, fields: dict[str, str], output_role: str) -> FormattedLLMCall:
            return FormattedLLMCall(engine, template, fields, params[f"{name}.instruction"], name=name,
                                    output_role=output_role)

        q_only = {"question": "question"}
        note_a = node("layer1_a", LAYER1_TEMPLATE, q_only, "facts of the question (layer-1 node A)").acall(question=question)
        note_b = node("layer1_b", LAYER1_TEMPLATE, q_only, "what the question asks (layer-1 node B)").acall(question=question)
        note_a, note_b = await asyncio.gather(note_a, note_b)
        layer2 = {"question": "question", "note_a": "notes of layer-1 node A", "note_b": "notes of layer-1 node B"}
        sol_a = node("layer2_a", LAYER2_TEMPLATE, layer2, "worked solution (layer-2 node A)").acall(
            question=question, note_a=note_a, note_b=note_b)
        sol_b = node("layer2_b", LAYER2_TEMPLATE, layer2, "checked worked solution (layer-2 node B)").acall(
            question=question, note_a=note_a, note_b=note_b)
        sol_a, sol_b = await asyncio.gather(sol_a, sol_b)
        solver = node("solver", SOLVER_TEMPLATE, {"question": "question", "solution_a": "solution of layer-2 node A",
                                                  "solution_b": "solution of layer-2 node B"},
                      "final answer of the layered system, ending with 'Answer: <number>'")
        answer = await solver.acall(question=question, solution_a=sol_a, solution_b=sol_b)
        # BBH's metric compares the parsed integer; GSM8K's metric parses the response itself.
        return parse_integer_answer(answer) if self.base == "bbh_object_counting" else answer

    def metric(self, prediction: Any, example: Example) -> MetricResult:
        """The base task's metric."""
        return self.base_task.metric(prediction, example)

    def sim_world(self, splits: Splits) -> SimWorld | None:
        world = self.base_task.sim_world(splits)
        if world is None:
            return None
        return world.model_copy(update={"task": self.name, "rubric": layered_rubric(self.base_rubric)})


