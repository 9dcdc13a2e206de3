"""GSM8K solved by a ReAct tool agent (textgrad_core.modules.ToolAgent) with a calculator tool: at each step the
model thinks and either calls `calculator[<expression>]` or answers, up to `max_steps` steps.

Data: the shipped GSM8K copy (MIT, tasks/data/gsm8k/LICENSE), split as the gsm8k task splits it. Trainable:
`agent.instruction` and `agent.tool.calculator` (the tool's definition).
"""
from __future__ import annotations

from typing import Any

from textgrad_core.engines import EngineSet
from textgrad_core.modules.tool_agent import Tool, ToolAgent
from textgrad_core.task import Example, SimWorld, Splits
from textgrad_core.variable import Parameter, ParameterSet, Variable

from tasks.gsm8k import RUBRIC, GSM8KTask, format_number, safe_eval
from tasks.validators import answer_line, declare, line_marker, literal

CALCULATOR = ("calculator[<expression>]: evaluates an arithmetic expression exactly (numbers, + - * / // % ** and "
              "parentheses) and returns its value.")
INSTRUCTION = ("Solve the math word problem with the help of the tools. At each step write 'Thought: <reasoning>' "
               "and then either 'Action: <tool>[<input>]' or, when done, 'Answer: <number>'.")


def calculate(expression: str) -> str:
    """The calculator tool: the value of an arithmetic expression (an AST walk, never eval)."""
    return format_number(safe_eval(expression))


class GSM8KAgentTask(GSM8KTask):
    """GSM8K through a ReAct agent with a calculator; numeric match of the final answer."""

    name = "gsm8k_agent"

    def __init__(self, max_steps: int = 4, **options: Any):
        super().__init__(**options)
        self.module = ToolAgent([Tool("calculator", CALCULATOR, calculate)], name="agent", instruction=INSTRUCTION,
                                max_steps=max_steps)
        self.description = f"GSM8K with a ReAct calculator agent (max {max_steps} steps); " + self.description

    def initial_parameters(self) -> list[Parameter]:
        return declare(self.module.parameters(), {
            "agent.instruction": [line_marker("Action:", "the agent loop reads 'Action: <tool>[<input>]'"),
                                  answer_line("Answer: <number>")],
            "agent.tool.calculator": [literal("calculator[", "the agent calls the tool as calculator[<expression>]")]})

    async def forward(self, example: Example, params: ParameterSet, engines: EngineSet) -> Variable:
        return await self.module.acall(engines["forward"], Variable(example.input, role="math word problem"), params)

    def sim_world(self, splits: Splits) -> SimWorld:
        world = super().sim_world(splits)
        targets = {"instruction": ["agent.instruction"], "calculator.description": ["agent.tool.calculator"]}
        rubric = [i.model_copy(update={"applies_to": [t for a in i.applies_to for t in targets.get(a, [])]})
                  for i in RUBRIC]
        return world.model_copy(update={"rubric": rubric})
