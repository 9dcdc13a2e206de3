"""A ReAct-style tool agent: at each step the model thinks and either calls a tool or answers, up to a step limit.

Graph: per step one LLM node `<name>.step` (fed by the instruction, the tool definitions and the scratchpad so
far) and, when it chose a tool, one `<name>.tool` node (fed by that step's reply and the chosen tool's definition)
whose observation extends the scratchpad; the last step's reply is the answer (or a `<name>.limit` node when the
step limit was reached). So the feedback on the answer flows back through every step, and credit reaches the step
(and the tool definition) that chose wrongly. Parameters: `<name>.instruction` and `<name>.tool.<tool>` (each
tool's definition, text).
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Callable

from textgrad_core.engines import Engine
from textgrad_core.errors import ConfigError
from textgrad_core.modules import prompts
from textgrad_core.modules.base import Module, ParameterSpec
from textgrad_core.ops import FormattedLLMCall, as_variable, join
from textgrad_core.variable import OpRecord, ParameterSet, Variable

_ACTION = re.compile(r"action\s*:\s*([A-Za-z_][\w-]*)\s*\[(.*)\]\s*$", re.IGNORECASE | re.MULTILINE)


@dataclass
class Tool:
    """A tool the agent may call: a name, its definition shown to the model (trainable), and the function."""

    name: str
    description: str
    run: Callable[[str], str]


def parse_action(reply: str) -> tuple[str, str] | None:
    """(tool name, input) of the last 'Action: tool[input]' line of a reply; None when the reply has none."""
    found = _ACTION.findall(reply)
    return (found[-1][0], found[-1][1].strip()) if found else None


class ToolAgent(Module):
    """Thought -> Action -> Observation steps until 'Answer:' or `max_steps`."""

    def __init__(self, tools: list[Tool], name: str = "agent", instruction: str = prompts.AGENT_INSTRUCTION,
                 max_steps: int = 5, max_tokens: int = 512):
        super().__init__(name)
        if not tools:
            raise ConfigError("ToolAgent needs at least one Tool.")
        names = [t.name for t in tools]
        if len(set(names)) != len(names):
            raise ConfigError(f"ToolAgent tools must have distinct names, got {names}.")
        if not isinstance(max_steps, int) or max_steps < 1:
            raise ConfigError(f"ToolAgent max_steps must be a whole number >= 1, not {max_steps!r}.")
        self.tools = {t.name: t for t in tools}
        self.instruction = instruction
        self.max_steps = max_steps
        self.max_tokens = max_tokens

    def specs(self) -> list[ParameterSpec]:
        return [ParameterSpec("instruction", self.instruction, "instruction of the agent that decides, step by "
                              "step, which tool to call and when to answer",
                              constraints=["Keep the formats 'Action: <tool>[<input>]' and 'Answer: <answer>'."])] + [
            ParameterSpec(f"tool.{t.name}", t.description, f"definition of the tool '{t.name}' shown to the agent",
                          constraints=[f"Keep the tool's name '{t.name}' and its call syntax."])
            for t in self.tools.values()]

    async def acall(self, engine: Engine, question: Variable | str, params: ParameterSet | None = None) -> Variable:
        """Run the loop on `question`; returns the final reply (or the step-limit node)."""
        question = as_variable(question, "question for the agent")
        definitions = {n: self.param(params, f"tool.{n}") for n in self.tools}
        tools = join(*(definitions[n] for n in sorted(definitions)), sep="\n", role="definitions of the tools")
        step_llm = FormattedLLMCall(engine, prompts.AGENT_STEP_TEMPLATE,
                                    {"tools": "tool definitions", "question": "question",
                                     "scratchpad": "the steps so far with their observations"},
                                    self.param(params, "instruction"), name=f"{self.name}.step",
                                    max_tokens=self.max_tokens,
                                    output_role="one agent step: a thought, then an action or the answer")
        scratchpad = Variable("(none yet)", role="the steps so far with their observations")
        reply = None
        for index in range(1, self.max_steps + 1):
            reply = await step_llm.acall(tools=tools, question=question, scratchpad=scratchpad)
            action = parse_action(str(reply.value))
            if action is None:  # no tool chosen: the reply is the answer
                self.record(params, str(question.value), str(reply.value))
                return reply
            observation = self._call_tool(index, reply, action, definitions)
            start = [] if index == 1 else [scratchpad]
            scratchpad = join(*start, reply, observation, role="the steps so far with their observations")
        return self._limit(reply, scratchpad)

    def _call_tool(self, index: int, reply: Variable, action: tuple[str, str],
                   definitions: dict[str, Variable]) -> Variable:
        name, argument = action
        tool = self.tools.get(name)
        inputs: list[tuple[str, Variable]] = [("step", reply)]
        if tool is None:
            text, error = f"Observation {index}: there is no tool '{name}' (tools: {', '.join(sorted(self.tools))}).", None
        else:
            inputs.append(("definition", definitions[name]))
            try:
                text, error = f"Observation {index}: {tool.run(argument)}", None
            except Exception as exc:  # a failing tool is an observation the agent (and the feedback) can see
                error = f"{type(exc).__name__}: {exc}"
                text = f"Observation {index}: the tool '{name}' failed: {error}"
        op = OpRecord(name=f"{self.name}.tool", kind="function", inputs=inputs, error=None,
                      description=f"Runs the tool the step chose ('{name}') on its input '{argument[:80]}'.")
        return Variable(value=text, role=f"observation from the tool '{name}'", op=op)

    def _limit(self, reply: Variable, scratchpad: Variable) -> Variable:
        op = OpRecord(name=f"{self.name}.limit", kind="function", inputs=[("last_step", reply), ("steps", scratchpad)],
                      description=f"The agent reached its limit of {self.max_steps} steps without an 'Answer:' line.")
        return Variable(value=f"{reply.value}\n(Stopped: {self.max_steps} steps without an answer.)",
                        role="the agent's last step, at the step limit", op=op)
