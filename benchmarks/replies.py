"""Deterministic replies of the mock server, in the format each kind of call asks for.

A call is classified by what its prompt asks for, the same way for this framework and for the peers, so a
benchmark can count calls and tokens per phase without any cooperation from the client:

- `optimizer`: asks for a new value (this framework's NEW_VALUE delimiters or joint JSON update, TextGrad's
  IMPROVED_VARIABLE tags, Trace/OptoPrime's JSON `suggestion`);
- `credit`: asks for feedback on one input (this framework's backprop prompt, TextGrad's gradient engine);
- `judge`: carries `JUDGE_MARK`, the phrase every workload's judge instruction contains;
- `forward`: everything else; answered "... Answer: N" with N a function of the prompt.

Every reply depends only on the request body, never on arrival order or time.
"""
from __future__ import annotations

import hashlib
import json
import re
from typing import Any

from benchmarks.spec import JUDGE_MARK
from textgrad_core.prompts import NEW_VALUE_CLOSE, NEW_VALUE_OPEN

KINDS = ("forward", "judge", "credit", "optimizer")

_CREDIT_MARKS = ("You are part of an optimization system that improves an AI pipeline",  # credit/prompts.py
                 "You are the gradient (feedback) engine")  # TextGrad's backward engine
_TEXTGRAD_OPTIMIZER = "<IMPROVED_VARIABLE>"
_OPTOPRIME_MARK = '"suggestion"'
_TRACE_VARIABLE = re.compile(r"^\((\w+)\) ([A-Za-z_][\w.]*)=", re.M)


def approx_tokens(text: str) -> int:
    """Tokens estimated as characters / 4 rounded up: the same count for every client, no tokenizer needed."""
    return -(-len(text) // 4)


def _digest(text: str) -> int:
    return int.from_bytes(hashlib.sha256(text.encode("utf-8")).digest()[:8], "big")


def _text(messages: list[dict[str, Any]]) -> str:
    parts = []
    for m in messages:
        content = m.get("content")
        if isinstance(content, list):  # content parts (TextGrad sends lists for multimodal-capable engines)
            content = "\n".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
        parts.append(str(content or ""))
    return "\n".join(parts)


def classify(messages: list[dict[str, Any]], request: dict[str, Any] | None = None) -> str:
    """The kind of call: forward, judge, credit or optimizer."""
    text = _text(messages)
    if ("<PARAMETERS_JSON>" in text or NEW_VALUE_OPEN in text or _TEXTGRAD_OPTIMIZER in text
            or (_OPTOPRIME_MARK in text and "#Variables" in text)):
        return "optimizer"
    if any(mark in text for mark in _CREDIT_MARKS):
        return "credit"
    if JUDGE_MARK in text:
        return "judge"
    return "forward"


def new_instruction(text: str) -> str:
    """The value every optimizer reply proposes: fixed length, so every framework's next forward prompt is alike."""
    return (f"Solve the problem step by step, check each intermediate number, and end with one line "
            f"'Answer: <number>'. (revision {_digest(text) % 1000:03d})")


def _joint_ids(text: str) -> list[str]:
    match = re.search(r"<PARAMETERS_JSON>(.*?)</PARAMETERS_JSON>", text, re.S)
    try:
        return list(json.loads(match.group(1))) if match else []
    except ValueError:
        return []


def _optoprime_variables(text: str) -> list[str]:
    """Names in the last #Variables section (the problem instance; an earlier one may be the prompt's example)."""
    section = text.rsplit("#Variables", 1)[-1].split("\n#", 1)[0]
    return [name for _, name in _TRACE_VARIABLE.findall(section)]


def reply_text(kind: str, messages: list[dict[str, Any]], request: dict[str, Any] | None = None) -> str:
    """The reply to one call of `kind`, a function of the messages only."""
    text = _text(messages)
    h = _digest(text)
    if kind == "optimizer":
        value = new_instruction(text)
        if "<PARAMETERS_JSON>" in text:
            return json.dumps({"reasoning": "The feedback asks for explicit checks.",
                               "updates": {pid: value for pid in _joint_ids(text)}})
        if _TEXTGRAD_OPTIMIZER in text:
            return f"{_TEXTGRAD_OPTIMIZER}{value}</IMPROVED_VARIABLE>"
        if _OPTOPRIME_MARK in text and "#Variables" in text:
            return json.dumps({"reasoning": "The feedback asks for explicit checks.", "answer": "",
                               "suggestion": {name: value for name in _optoprime_variables(text)}})
        return f"{NEW_VALUE_OPEN}\n{value}\n{NEW_VALUE_CLOSE}"
    if kind == "credit":
        return (f"The final number disagrees with the reference answer. This input should ask for each intermediate "
                f"result to be checked before the answer is given. (note {h % 1000:03d})")
    if kind == "judge":
        return (f"The response ends with Answer: {h % 97}, which differs from the reference answer; the reasoning "
                f"skips a check of the intermediate numbers.\nSCORE: 0")
    if request and request.get("response_format"):
        return json.dumps({"answer": str(h % 97)})
    return f"Step 1: read the problem. Step 2: combine the numbers. Step 3: check the result.\nAnswer: {h % 97}"
