"""Tool use: an agent picks one of five tools from their descriptions and fills in the arguments.

The system: the agent LLM sees the agent instruction (system prompt), the five tool definitions and a request, and
replies with one tool call as JSON, {"tool": <name>, "args": {...}}. The reply is parsed (`parse_tool_call`, traced)
and the call is run (`run_tool`, traced); a call that cannot be parsed or run -- an unknown tool, a missing argument,
a unit, date or table the tool does not accept -- becomes an error node whose message reaches the feedback. The
answer is the tool's result.

Trainable parameters (the survey's "tool definitions" parameter): the agent instruction and one text definition per
tool (its description and argument docs); the tools' code is fixed.

Data: generated from `seed` with random.Random, 120 unique requests in six balanced kinds (unit conversion, date
plus/minus days, days between two dates, capital city, element symbol, arithmetic), phrased in natural language (unit
names, dates like 'March 3, 2024', 'times'/'plus'), split in order 30 train / 30 val / 60 test (the kinds in turn,
so each split holds 5 / 5 / 10 of each kind), each split shuffled.
Each example's target is the exact answer; its meta holds the expected tool and arguments.

Metric: task success (the tool's result equals the expected answer exactly); the feedback names the wrong tool or
the argument that differs, or quotes the tool's error.
"""
from __future__ import annotations

import ast
import datetime as dt
import inspect
import json
import math
import random
from typing import Any, Callable

from textgrad_core.arithmetic import evaluate
from textgrad_core.engines import EngineSet
from textgrad_core.loss import MetricResult
from textgrad_core.ops import FormattedLLMCall, traced
from tasks.protocols import STRICT, choose_protocol
from tasks.validators import mentions_all, mentions_any
from textgrad_core.task import DataError, Example, RubricItem, SimWorld, Splits, Task, check_size
from textgrad_core.variable import Parameter, ParameterSet, Variable

# ---- the tools -----------------------------------------------------------------------------------------------------

# unit code -> (dimension, factor to the dimension's base unit); temperatures are converted by formula.
UNITS: dict[str, tuple[str, float]] = {
    "km": ("length", 1000.0), "m": ("length", 1.0), "cm": ("length", 0.01), "mi": ("length", 1609.344),
    "ft": ("length", 0.3048), "in": ("length", 0.0254),
    "kg": ("mass", 1.0), "g": ("mass", 0.001), "lb": ("mass", 0.45359237), "oz": ("mass", 0.028349523125),
    "l": ("volume", 1.0), "ml": ("volume", 0.001), "gal": ("volume", 3.785411784),
    "C": ("temperature", 1.0), "F": ("temperature", 1.0), "K": ("temperature", 1.0),
}
CAPITALS = {
    "France": "Paris", "Japan": "Tokyo", "Kenya": "Nairobi", "Canada": "Ottawa", "Brazil": "Brasilia",
    "Australia": "Canberra", "Egypt": "Cairo", "Norway": "Oslo", "Peru": "Lima", "Vietnam": "Hanoi",
    "Chile": "Santiago", "Poland": "Warsaw", "Portugal": "Lisbon", "Turkey": "Ankara", "Thailand": "Bangkok",
    "Argentina": "Buenos Aires", "Ireland": "Dublin", "Morocco": "Rabat", "Nigeria": "Abuja", "Sweden": "Stockholm",
    "India": "New Delhi", "Germany": "Berlin", "Italy": "Rome", "Spain": "Madrid", "Greece": "Athens",
    "Mexico": "Mexico City", "Cuba": "Havana", "Austria": "Vienna", "Finland": "Helsinki", "Ghana": "Accra",
}
ELEMENT_SYMBOLS = {
    "hydrogen": "H", "helium": "He", "carbon": "C", "nitrogen": "N", "oxygen": "O", "sodium": "Na",
    "magnesium": "Mg", "aluminium": "Al", "silicon": "Si", "phosphorus": "P", "sulfur": "S", "chlorine": "Cl",
    "potassium": "K", "calcium": "Ca", "iron": "Fe", "copper": "Cu", "zinc": "Zn", "silver": "Ag", "tin": "Sn",
    "gold": "Au", "mercury": "Hg", "lead": "Pb", "neon": "Ne", "argon": "Ar", "uranium": "U", "tungsten": "W",
    "nickel": "Ni", "iodine": "I",
}
TABLES = {"capital": CAPITALS, "element_symbol": ELEMENT_SYMBOLS}


def format_number(x: float) -> str:
    """A number rounded to 2 decimals, without trailing zeros ('3.1', '12', '-0.5')."""
    text = f"{round(float(x), 2):.2f}".rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text


def _unit(code: Any) -> str:
    text = str(code).strip()
    for known in UNITS:
        if text.lower() == known.lower():
            return known
    raise ValueError(f"unknown unit {code!r}; units are the codes {', '.join(UNITS)}")


def _iso(date: Any, arg: str) -> dt.date:
    try:
        return dt.date.fromisoformat(str(date).strip())
    except ValueError:
        raise ValueError(f"argument '{arg}' must be an ISO date YYYY-MM-DD, got {date!r}") from None


@traced
def convert_units(value: float, from_unit: str, to_unit: str) -> str:
    """Convert a quantity between units of length, mass, volume or temperature; returns '<number> <unit code>'."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"argument 'value' must be a number, got {value!r}")
    src, dst = _unit(from_unit), _unit(to_unit)
    if UNITS[src][0] != UNITS[dst][0]:
        raise ValueError(f"cannot convert {UNITS[src][0]} ({src}) to {UNITS[dst][0]} ({dst})")
    if UNITS[src][0] == "temperature":
        celsius = {"C": value, "F": (value - 32) * 5 / 9, "K": value - 273.15}[src]
        result = {"C": celsius, "F": celsius * 9 / 5 + 32, "K": celsius + 273.15}[dst]
    else:
        result = value * UNITS[src][1] / UNITS[dst][1]
    return f"{format_number(result)} {dst}"


@traced
def add_days(date: str, days: int) -> str:
    """The ISO date (YYYY-MM-DD) that lies `days` days after `date` (before it when `days` is negative)."""
    if isinstance(days, bool) or not isinstance(days, int):
        raise ValueError(f"argument 'days' must be a whole number, got {days!r}")
    return (_iso(date, "date") + dt.timedelta(days=days)).isoformat()


@traced
def days_between(start: str, end: str) -> str:
    """The number of days from `start` to `end` (both ISO dates YYYY-MM-DD); negative when `end` comes first."""
    return str((_iso(end, "end") - _iso(start, "start")).days)


@traced
def lookup(table: str, key: str) -> str:
    """The value stored under `key` (case-insensitive) in a fixed reference table."""
    if table not in TABLES:
        raise ValueError(f"unknown table {table!r}; the tables are {', '.join(TABLES)}")
    rows = {k.lower(): v for k, v in TABLES[table].items()}
    found = rows.get(str(key).strip().lower())
    if found is None:
        raise ValueError(f"no entry {key!r} in table '{table}'")
    return found


CALCULATOR_OPERATORS = (ast.Add, ast.Sub, ast.Mult, ast.Div, ast.Pow)
MAX_EXPONENT = 12          # a tool call's powers stay small; with MAX_MAGNITUDE no expression can stall the host
MAX_MAGNITUDE = 1e100


@traced
def calculate(expression: str) -> str:
    """Evaluate an arithmetic expression of numbers, + - * / ** and parentheses; the result rounded to 2 decimals."""
    result = evaluate(str(expression), binary=CALCULATOR_OPERATORS, max_exponent=MAX_EXPONENT,
                      max_magnitude=MAX_MAGNITUDE)
    if not math.isfinite(result):
        raise ValueError(f"{expression!r} has no finite value")
    return format_number(result)


TOOLS: dict[str, Callable[..., Variable]] = {f.__name__: f for f in (convert_units, add_days, days_between, lookup, calculate)}


def execute(tool: str, args: dict[str, Any]) -> str:
    """Run a tool by name on plain values (no graph): the reference implementation behind `run_tool`."""
    return TOOLS[tool].__wrapped__(**args)  # type: ignore[attr-defined]


# ---- the system ------------------------------------------------------------------------------------------------------


@traced(output_role="tool call parsed from the agent's reply")
def parse_tool_call(reply: str) -> dict:
    """Take the last JSON object with a "tool" key in the reply: {"tool": <name>, "args": {<argument>: <value>}}."""
    decoder, found, start = json.JSONDecoder(), None, reply.find("{")
    while start >= 0:
        try:
            obj, _ = decoder.raw_decode(reply, start)
        except ValueError:
            obj = None
        if isinstance(obj, dict) and "tool" in obj:
            found = obj
        start = reply.find("{", start + 1)
    if found is None:
        raise ValueError('the reply holds no JSON tool call of the form {"tool": "<name>", "args": {...}}')
    args = found.get("args", {})
    if not isinstance(args, dict):
        raise ValueError(f"'args' must be a JSON object of argument names to values, got {args!r}")
    return {"tool": str(found["tool"]), "args": args}


@traced(output_role="the tool's result, with the call that produced it")
def run_tool(call: dict) -> dict:
    """Run the named tool with the call's arguments; an unknown tool or a bad argument raises with the tool's message."""
    name, args = call["tool"], call["args"]
    if name not in TOOLS:
        raise ValueError(f"unknown tool {name!r}; the tools are {', '.join(TOOLS)}")
    try:
        result = execute(name, args)
    except TypeError as exc:  # missing or unexpected argument names
        raise ValueError(f"{name}: {exc}") from None
    except ValueError as exc:
        raise ValueError(f"{name}: {exc}") from None
    return {"tool": name, "args": args, "result": result}


INITIAL_INSTRUCTION = (
    "You are an assistant that answers each request by calling exactly one of the tools below. Reply with a single "
    'JSON object of the form {"tool": "<tool name>", "args": {"<argument>": <value>, ...}} and nothing after it.'
)
INITIAL_DEFINITIONS = {
    "convert_units": "convert_units(value, from_unit, to_unit): converts a quantity.\n"
                     "Arguments: value (number), from_unit (text), to_unit (text).",
    "add_days": "add_days(date, days): moves a date.\nArguments: date (text), days (integer).",
    "days_between": "days_between(start, end): compares two dates.\nArguments: start (text), end (text).",
    "lookup": "lookup(table, key): looks up a fact in a table.\nArguments: table (text), key (text).",
    "calculate": "calculate(expression): evaluates math.\nArguments: expression (text).",
}
TEMPLATE = ("Tools you can call:\n\n{convert_units}\n\n{add_days}\n\n{days_between}\n\n{lookup}\n\n{calculate}\n\n"
            "Request: {request}")


class ToolUseTask(Task):
    """Answer a request by calling the right tool with the right arguments; exact-answer success."""

    name = "tool_use"

    def __init__(self, seed: int = 0, n_train: int = 30, n_val: int = 30, n_test: int = 60, protocol: str = STRICT):
        self.protocol = choose_protocol(self.name, protocol, (STRICT,))
        for option, value in (("n_train", n_train), ("n_val", n_val), ("n_test", n_test)):
            check_size(option, value)
        self.seed, self.n_train, self.n_val, self.n_test = seed, n_train, n_val, n_test
        self.description = (f"Tool use with trainable tool definitions (generated requests, seed {seed}: "
                            f"{n_train} train / {n_val} val / {n_test} test).")

    def info(self) -> dict[str, Any]:
        return {**super().info(), "protocol": self.protocol}

    def load_splits(self) -> Splits:
        """Generated from `seed`: unique requests, the six kinds in turn (so each split is balanced), each split shuffled."""
        rows = generate_requests(self.seed, self.n_train + self.n_val + self.n_test)
        a, b = self.n_train, self.n_train + self.n_val
        rng = random.Random(f"tool_use-split-{self.seed}")
        parts = {"train": rows[:a], "val": rows[a:b], "test": rows[b:]}
        for split, part in parts.items():
            rng.shuffle(part)
            for i, row in enumerate(part):
                row.id = f"tool_use-{self.seed}-{split}-{i:03d}"
        return Splits(**parts)

    def initial_parameters(self) -> list[Parameter]:
        params = [Parameter(value=INITIAL_INSTRUCTION, name="instruction",
                            role="system prompt of the agent that answers requests by calling one tool",
                            constraints=['Keep the reply format: one JSON object {"tool": ..., "args": {...}}.'],
                            validators=[mentions_any(["JSON"], "the reply is parsed as one JSON object"),
                                        mentions_all(["tool", "args"], "the keys of the JSON reply")])]
        for tool, text in INITIAL_DEFINITIONS.items():
            names = list(inspect.signature(TOOLS[tool]).parameters)
            params.append(Parameter(value=text, name=f"tool.{tool}",
                                    role=f"definition of the tool '{tool}' shown to the agent: its description and argument docs",
                                    constraints=[f"Keep the tool name '{tool}' and its argument names ({', '.join(names)}) "
                                                 "unchanged."],
                                    validators=[mentions_all([tool, *names], "the names the agent's calls must use")]))
        return params

    async def forward(self, example: Example, params: ParameterSet, engines: EngineSet) -> Variable:
        fields = {tool: f"definition of the tool '{tool}'" for tool in TOOLS} | {"request": "the user's request"}
        agent = FormattedLLMCall(engines["forward"], TEMPLATE, fields, system_prompt=params["instruction"],
                                 name="tool_agent", output_role="the agent's reply with its tool call")
        reply = await agent.acall(request=Variable(example.input, role="the user's request"),
                                  **{tool: params[f"tool.{tool}"] for tool in TOOLS})
        call = parse_tool_call(reply)
        return call if call.is_error else run_tool(call)

    def metric(self, prediction: Any, example: Example) -> MetricResult:
        """Exact answer; when wrong, name the wrong tool or the argument that differs from the expected call."""
        want_tool, want_args = example.meta["tool"], example.meta["args"]
        expected_call = f"{want_tool}({_render_args(want_args)})"
        if isinstance(prediction, dict):
            tool, args, result = prediction.get("tool"), prediction.get("args") or {}, str(prediction.get("result"))
        else:
            tool, args, result = None, {}, str(prediction).strip()
        if result == example.target:
            return MetricResult(score=1.0, feedback=f"Correct: expected {example.target}, got {result}.")
        text = f"Wrong: expected {example.target}, got {result}."
        if tool is not None and tool != want_tool:
            text += f" The agent called the wrong tool '{tool}'; this request needs {expected_call}."
        elif tool is not None:
            bad = [k for k in sorted(set(want_args) | set(args)) if not _same_arg(k, args.get(k), want_args.get(k))]
            text += "".join(f" Argument '{k}' of {tool} was {args.get(k)!r} but should be {want_args.get(k)!r}." for k in bad)
            text += f" The expected call is {expected_call}."
        return MetricResult(score=0.0, feedback=text)

    def sim_world(self, splits: Splits) -> SimWorld:
        every = splits.train + splits.val + splits.test
        return SimWorld(task=self.name, rubric=RUBRIC, answer_format="{answer}", base_accuracy=0.3, max_accuracy=0.95,
                        answers={e.input: e.meta["call"] for e in every},
                        wrong_answers={e.input: e.meta["wrong_call"] for e in every})


def _render_args(args: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v!r}" for k, v in args.items())


def _same_arg(name: str, got: Any, want: Any) -> bool:
    """Equal for the tool: numbers by value, unit codes and table keys case-insensitively, expressions by value."""
    if got is None or want is None:
        return got is want
    if name == "expression":
        try:
            return calculate.__wrapped__(got) == calculate.__wrapped__(want)  # type: ignore[attr-defined]
        except ValueError:
            return False
    if isinstance(want, (int, float)) and isinstance(got, (int, float)) and not isinstance(got, bool):
        return float(got) == float(want)
    if name in ("from_unit", "to_unit", "key"):
        return str(got).strip().lower() == str(want).strip().lower()
    return got == want


# ---- data ----------------------------------------------------------------------------------------------------------

UNIT_NAMES = {"km": "kilometres", "m": "metres", "cm": "centimetres", "mi": "miles", "ft": "feet", "in": "inches",
              "kg": "kilograms", "g": "grams", "lb": "pounds", "oz": "ounces", "l": "litres", "ml": "millilitres",
              "gal": "gallons", "C": "degrees Celsius", "F": "degrees Fahrenheit", "K": "kelvin"}
KINDS = ("units", "add_days", "days_between", "capital", "element", "arithmetic")


def _natural_date(d: dt.date, rng: random.Random) -> str:
    """A date as a person writes it: ISO, 'March 3, 2024' or '3 March 2024'."""
    style = rng.randrange(3)
    if style == 0:
        return d.isoformat()
    month = d.strftime("%B")
    return f"{month} {d.day}, {d.year}" if style == 1 else f"{d.day} {month} {d.year}"


def _random_date(rng: random.Random) -> dt.date:
    return dt.date(2020, 1, 1) + dt.timedelta(days=rng.randrange(7 * 365))


def _one_request(kind: str, rng: random.Random) -> tuple[str, str, dict[str, Any], dict[str, Any]]:
    """(request text, tool, expected args, a plausible wrong call) for one request of `kind`."""
    if kind == "units":
        dimension = rng.choice(["length", "mass", "volume", "temperature"])
        src, dst = rng.sample([u for u, (d, _) in UNITS.items() if d == dimension], 2)
        value = rng.choice([rng.randint(1, 250), round(rng.uniform(0.5, 100), 1)])
        text = rng.choice(["How many {b} are in {v} {a}?", "Convert {v} {a} to {b}.", "What is {v} {a} in {b}?"])
        args = {"value": value, "from_unit": src, "to_unit": dst}
        wrong = rng.choice([{"tool": "calculate", "args": {"expression": str(value)}},
                            {"tool": "convert_units", "args": {"value": value, "from_unit": UNIT_NAMES[src],
                                                               "to_unit": UNIT_NAMES[dst]}}])
        return text.format(v=value, a=UNIT_NAMES[src], b=UNIT_NAMES[dst]), "convert_units", args, wrong
    if kind == "add_days":
        date, days, before = _random_date(rng), rng.randint(2, 400), rng.random() < 0.4
        said = _natural_date(date, rng)
        text = (f"What is the date {days} days before {said}?" if before else
                rng.choice([f"What date is {days} days after {said}?", f"Which date comes {days} days after {said}?"]))
        args = {"date": date.isoformat(), "days": -days if before else days}
        bad = ({"date": said, "days": args["days"]} if said != date.isoformat() else
               {"date": args["date"], "days": days if before else f"{days} days"})
        wrong = rng.choice([{"tool": "add_days", "args": bad},
                            {"tool": "days_between", "args": {"start": date.isoformat(), "end": date.isoformat()}}])
        return text, "add_days", args, wrong
    if kind == "days_between":
        start = _random_date(rng)
        end = start + dt.timedelta(days=rng.randint(3, 900))
        a, b = _natural_date(start, rng), _natural_date(end, rng)
        text = rng.choice([f"How many days are there from {a} to {b}?", f"How many days lie between {a} and {b}?"])
        args = {"start": start.isoformat(), "end": end.isoformat()}
        wrong = rng.choice([{"tool": "days_between", "args": {"start": a, "end": b} if (a, b) != tuple(args.values())
                             else {"start": args["end"], "end": args["start"]}},
                            {"tool": "add_days", "args": {"date": start.isoformat(), "days": 0}}])
        return text, "days_between", args, wrong
    if kind == "capital":
        country = rng.choice(sorted(CAPITALS))
        text = rng.choice([f"What is the capital of {country}?", f"Which city is the capital of {country}?"])
        wrong = rng.choice([{"tool": "lookup", "args": {"table": "capitals", "key": country}},
                            {"tool": "capital_of", "args": {"country": country}}])
        return text, "lookup", {"table": "capital", "key": country}, wrong
    if kind == "element":
        element = rng.choice(sorted(ELEMENT_SYMBOLS))
        text = rng.choice([f"What is the chemical symbol for {element}?", f"Which symbol stands for the element {element}?"])
        wrong = rng.choice([{"tool": "lookup", "args": {"table": "capital", "key": element}},
                            {"tool": "lookup", "args": {"table": "elements", "key": element}}])
        return text, "lookup", {"table": "element_symbol", "key": element}, wrong
    a, b, c = rng.randint(2, 60), rng.randint(2, 40), rng.randint(2, 12)
    op1, op2 = rng.choice([("+", "plus"), ("-", "minus"), ("*", "times")]), rng.choice([("*", "times"), ("/", "divided by")])
    expression = f"({a} {op1[0]} {b}) {op2[0]} {c}"
    text = rng.choice([f"What is ({a} {op1[0]} {b}) {op2[0]} {c}?",
                       f"What is {a} {op1[1]} {b}, then {op2[1]} {c}?"])
    wrong = rng.choice([{"tool": "calculate", "args": {"expression": f"{a} {op1[1]} {b}, then {op2[1]} {c}"}},
                        {"tool": "calculator", "args": {"expression": expression}}])
    return text, "calculate", {"expression": expression}, wrong


MAX_REPEATS = 5000  # draws in a row that repeat a request already made: that kind has no new requests left


def generate_requests(seed: int, n: int) -> list[Example]:
    """`n` unique requests from `seed`, the kinds in turn (any 6 consecutive rows hold one of each), answered by the tools."""
    rng = random.Random(seed)
    rows: list[Example] = []
    seen: set[str] = set()
    repeats = 0
    while len(rows) < n:
        kind = KINDS[len(rows) % len(KINDS)]
        text, tool, args, wrong = _one_request(kind, rng)
        if text in seen:
            # Each kind has a finite pool of distinct requests: when one runs dry, stop instead of drawing forever.
            repeats += 1
            if repeats > MAX_REPEATS:
                raise DataError(f"tool_use: seed {seed} yields only {len(rows)} distinct requests (the '{kind}' kind "
                                f"ran out) but the splits need {n}: lower task.n_train + task.n_val + task.n_test "
                                f"to at most {len(rows)}.")
            continue
        repeats = 0
        seen.add(text)
        call = json.dumps({"tool": tool, "args": args})
        rows.append(Example(id="", input=text, target=execute(tool, args),
                            meta={"kind": kind, "tool": tool, "args": args, "call": call, "wrong_call": json.dumps(wrong)}))
    for i, row in enumerate(rows):
        row.id = f"tool_use-{seed}-{i:03d}"
    return rows


# ---- simulator rubric: guidance a good instruction and good tool definitions contain -------------------------------
RUBRIC = [
    RubricItem(key="tu_pick_by_description", applies_to=["instruction"],
               guidance="Read every tool definition and call the tool whose description covers the request; never "
                        "answer from memory.",
               keywords=["never answer from memory", "whose description covers"],
               hint="it should tell the agent to call the tool whose description covers the request, never answering from memory"),
    RubricItem(key="tu_copy_argument_formats", applies_to=["instruction"],
               guidance="Write every argument in the exact form the tool's argument docs require, rewriting the "
                        "request's wording (unit names, dates, number words) into that form.",
               keywords=["exact form the tool's argument docs require", "rewriting the request's wording"],
               hint="it should tell the agent to rewrite the request's wording into the exact argument form each tool documents"),
    RubricItem(key="tu_units_scope", applies_to=["tool.convert_units"],
               guidance="Use convert_units for any change of units: length, mass, volume or temperature.",
               keywords=["any change of unit"],
               hint="it should say that convert_units handles any change of units (length, mass, volume, temperature)"),
    RubricItem(key="tu_unit_codes", applies_to=["tool.convert_units"],
               guidance="from_unit and to_unit are unit codes: km, m, cm, mi, ft, in, kg, g, lb, oz, l, ml, gal, C, F, K "
                        "(write 'lb', not 'pounds').",
               keywords=["are unit codes", "not 'pounds'"],
               hint="it should list the unit codes from_unit and to_unit accept (e.g. 'lb', not 'pounds')"),
    RubricItem(key="tu_iso_dates", applies_to=["tool.add_days", "tool.days_between"],
               guidance="Dates are ISO YYYY-MM-DD: write 'March 3, 2024' as 2024-03-03.",
               keywords=["YYYY-MM-DD"],
               hint="it should say that dates must be written as ISO YYYY-MM-DD"),
    RubricItem(key="tu_negative_days", applies_to=["tool.add_days"],
               guidance="days is a whole number, negative for dates before the given one ('10 days before' is -10).",
               keywords=["negative for dates before"],
               hint="it should say that days is a whole number, negative for dates before the given date"),
    RubricItem(key="tu_lookup_tables", applies_to=["tool.lookup"],
               guidance="table is 'capital' (country -> capital city) or 'element_symbol' (element name -> chemical symbol).",
               keywords=["'element_symbol' (element name", "element name -> chemical symbol"],
               hint="it should name the two tables, 'capital' and 'element_symbol', and what each maps"),
    RubricItem(key="tu_calc_symbols", applies_to=["tool.calculate"],
               guidance="expression uses digits and + - * / ** ( ) only: write 'times' as *, 'divided by' as /.",
               keywords=["write 'times' as *", "digits and + - * /"],
               hint="it should say that the expression uses only digits and + - * / ** ( ), with words like 'times' written as symbols"),
]
