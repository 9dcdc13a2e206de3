"""Traced operations: each takes Variables, returns a Variable, and records what it did."""
from __future__ import annotations

import functools
import inspect
import string
import textwrap
from typing import Any, Callable, Mapping

from textgrad_core.engines import Engine, LLMRequest, Message
from textgrad_core.variable import OpRecord, Variable


def as_variable(value: Any, role: str) -> Variable:
    """Wrap a plain value as a constant (non-trainable) Variable; Variables pass through."""
    return value if isinstance(value, Variable) else Variable(value=value, role=role)


class LLMCall:
    """An LLM call whose system prompt (usually a trainable instruction) and user input are Variables."""

    def __init__(self, engine: Engine, system_prompt: Variable | str | None = None, *, name: str = "llm_call",
                 output_role: str = "response of the language model", temperature: float = 0.0,
                 max_tokens: int = 1024):
        self.engine = engine
        self.system_prompt = as_variable(system_prompt, "system prompt") if system_prompt is not None else None
        self.name = name
        self.output_role = output_role
        self.temperature = temperature
        self.max_tokens = max_tokens

    def _request(self, user: Variable, sample_index: int) -> LLMRequest:
        messages = ([Message(role="system", content=str(self.system_prompt.value))] if self.system_prompt else [])
        messages.append(Message(role="user", content=str(user.value)))
        return LLMRequest(messages=tuple(messages), temperature=self.temperature, max_tokens=self.max_tokens,
                          sample_index=sample_index, tag=f"forward:{self.name}")

    def _output(self, request: LLMRequest, user: Variable, text: str) -> Variable:
        inputs = ([("system_prompt", self.system_prompt)] if self.system_prompt else []) + [("input", user)]
        op = OpRecord(name=self.name, kind="llm", inputs=inputs,
                      description="The language model answers the input, instructed by the system prompt.",
                      prompt=[m.model_dump() for m in request.messages])
        return Variable(value=text, role=self.output_role, op=op)

    async def acall(self, user: Variable | str, sample_index: int = 0) -> Variable:
        user = as_variable(user, "input to the language model")
        request = self._request(user, sample_index)
        reply = await self.engine.acomplete(request)
        return self._output(request, user, reply.text)

    def __call__(self, user: Variable | str, sample_index: int = 0) -> Variable:
        user = as_variable(user, "input to the language model")
        request = self._request(user, sample_index)
        return self._output(request, user, self.engine.complete(request).text)


class FormattedLLMCall:
    """An LLM call whose user message is a template with named fields, each a Variable (credit reaches each field)."""

    def __init__(self, engine: Engine, template: str, fields: Mapping[str, str], system_prompt: Variable | str | None = None,
                 *, name: str = "formatted_llm_call", output_role: str = "response of the language model",
                 temperature: float = 0.0, max_tokens: int = 1024):
        names = {f for _, f, _, _ in string.Formatter().parse(template) if f}
        if names != set(fields):
            raise ValueError(f"Template fields {sorted(names)} do not match the declared fields {sorted(fields)}.")
        self.engine = engine
        self.template = template
        self.fields = dict(fields)  # field name -> role of the value that fills it
        self.system_prompt = as_variable(system_prompt, "system prompt") if system_prompt is not None else None
        self.name = name
        self.output_role = output_role
        self.temperature = temperature
        self.max_tokens = max_tokens

    def _bind(self, values: Mapping[str, Any]) -> dict[str, Variable]:
        missing = set(self.fields) - set(values)
        if missing:
            raise TypeError(f"{self.name} is missing fields: {sorted(missing)}")
        return {f: as_variable(values[f], role) for f, role in self.fields.items()}

    def _request(self, bound: dict[str, Variable], sample_index: int) -> LLMRequest:
        user = self.template.format(**{f: v.value for f, v in bound.items()})
        messages = ([Message(role="system", content=str(self.system_prompt.value))] if self.system_prompt else [])
        messages.append(Message(role="user", content=user))
        return LLMRequest(messages=tuple(messages), temperature=self.temperature, max_tokens=self.max_tokens,
                          sample_index=sample_index, tag=f"forward:{self.name}")

    def _output(self, request: LLMRequest, bound: dict[str, Variable], text: str) -> Variable:
        inputs = ([("system_prompt", self.system_prompt)] if self.system_prompt else []) + list(bound.items())
        op = OpRecord(name=self.name, kind="formatted_llm", inputs=inputs, template=self.template,
                      description="The language model answers the filled-in template, instructed by the system prompt.",
                      prompt=[m.model_dump() for m in request.messages])
        return Variable(value=text, role=self.output_role, op=op)

    async def acall(self, sample_index: int = 0, **values: Any) -> Variable:
        bound = self._bind(values)
        request = self._request(bound, sample_index)
        reply = await self.engine.acomplete(request)
        return self._output(request, bound, reply.text)

    def __call__(self, sample_index: int = 0, **values: Any) -> Variable:
        bound = self._bind(values)
        request = self._request(bound, sample_index)
        return self._output(request, bound, self.engine.complete(request).text)


def _source_of(fn: Callable) -> str | None:
    try:
        return textwrap.dedent(inspect.getsource(fn))
    except (OSError, TypeError):
        return None


def traced(fn: Callable | None = None, *, name: str | None = None, output_role: str | None = None) -> Any:
    """Decorate a Python function or tool so each call records a node (name, docstring, source).

    Variables passed in are unwrapped to their values; the result is wrapped in a Variable. An exception
    inside becomes an error node carrying the message, so one failing example does not crash the run.
    """

    def decorate(func: Callable) -> Callable:
        op_name = name or func.__name__
        doc = inspect.getdoc(func) or ""
        source = _source_of(func)
        signature = inspect.signature(func)
        role = output_role or f"output of {op_name}"

        def bind(args: tuple, kwargs: dict) -> tuple[list[tuple[str, Variable]], dict[str, Any]]:
            bound = signature.bind(*args, **kwargs)
            bound.apply_defaults()
            inputs, raw = [], {}
            for arg_name, value in bound.arguments.items():
                var = as_variable(value, f"argument '{arg_name}' of {op_name}")
                inputs.append((arg_name, var))
                raw[arg_name] = var.value
            return inputs, raw

        def finish(inputs: list, result: Any = None, error: BaseException | None = None) -> Variable:
            message = f"{type(error).__name__}: {error}" if error is not None else None
            op = OpRecord(name=op_name, kind="function", inputs=inputs, description=doc, source=source, error=message)
            value = f"ERROR in {op_name}: {message}" if error is not None else result
            return Variable(value=value, role=role, op=op)

        if inspect.iscoroutinefunction(func):
            @functools.wraps(func)
            async def async_wrapper(*args: Any, **kwargs: Any) -> Variable:
                inputs, raw = bind(args, kwargs)
                try:
                    result = await func(**raw)
                except Exception as exc:  # becomes an error node: the message reaches the feedback
                    return finish(inputs, error=exc)
                return finish(inputs, result)
            async_wrapper.traced_op = op_name  # type: ignore[attr-defined]
            return async_wrapper

        @functools.wraps(func)
        def wrapper(*args: Any, **kwargs: Any) -> Variable:
            inputs, raw = bind(args, kwargs)
            try:
                result = func(**raw)
            except Exception as exc:  # becomes an error node: the message reaches the feedback
                return finish(inputs, error=exc)
            return finish(inputs, result)
        wrapper.traced_op = op_name  # type: ignore[attr-defined]
        return wrapper

    return decorate(fn) if fn is not None else decorate


def join(*parts: Variable | str, sep: str = "\n", role: str = "concatenation of its inputs") -> Variable:
    """Concatenate the values of several Variables into one."""
    inputs = [(f"part{i}", as_variable(p, f"part {i} of a concatenation")) for i, p in enumerate(parts)]
    value = sep.join(str(v.value) for _, v in inputs)
    op = OpRecord(name="join", kind="join", inputs=inputs, description=f"Concatenates its inputs separated by {sep!r}.")
    return Variable(value=value, role=role, op=op)


async def call_code(code: Variable, function_name: str, *args: Variable | Any, limits: Any = None,
                    output_role: str | None = None) -> Variable:
    """Run `function_name` from the Python source in `code` (often a trainable code Parameter) in the sandbox.

    The arguments and result cross the process boundary as JSON. A crash, timeout or blocked operation in the
    code becomes an error node carrying the sandbox's message, which then reaches the feedback.
    """
    from textgrad_core.sandbox import acall_function

    inputs = [("code", code)] + [(f"arg{i}", as_variable(a, f"argument {i} of {function_name}")) for i, a in enumerate(args)]
    value, result = await acall_function(str(code.value), function_name, [v.value for _, v in inputs[1:]], limits=limits)
    error = None if result.ok else (result.error or f"exit code {result.returncode}")
    op = OpRecord(name=function_name, kind="code", inputs=inputs, source=str(code.value), error=error,
                  description=f"Runs the function '{function_name}' defined by the code input, in a sandbox.")
    return Variable(value=f"ERROR in {function_name}: {error}" if error else value,
                    role=output_role or f"return value of {function_name}", op=op)
