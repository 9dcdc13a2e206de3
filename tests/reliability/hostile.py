"""A hostile model behind the fault server, and the independent checks of what a run logged.

`hostile_reply` answers like tests/wire_model.py, except that every first optimizer request (and a seeded share of
the re-asks that follow) gets a reply that breaks the contract: `<NEW_VALUE>` without its closing tag (or the reverse), an empty value, a value far past
any length limit, or for the joint optimizer truncated, deeply nested, prose-only or ill-typed JSON. Every broken
reply carries HOSTILE_MARK so the checks can find it in calls.jsonl.
"""
from __future__ import annotations

import hashlib
import json
import re
from typing import Any

from textgrad_core import prompts
from wire_model import wire_reply

HOSTILE_MARK = "(hostile reply)"
HOSTILE_SHARE = 0.4  # of re-asks; every first optimizer request of a conversation gets a broken reply

_TGD_BREAKS = (
    lambda h: f"{prompts.NEW_VALUE_OPEN}\nA value whose closing tag never comes {HOSTILE_MARK} r{h}",
    lambda h: f"A value whose opening tag is missing {HOSTILE_MARK} r{h}\n{prompts.NEW_VALUE_CLOSE}",
    lambda h: f"{HOSTILE_MARK} {prompts.NEW_VALUE_OPEN}\n   \n{prompts.NEW_VALUE_CLOSE}",
    lambda h: f"{prompts.NEW_VALUE_OPEN}\n{HOSTILE_MARK} r{h} " + "far too long " * 40_000 + f"\n{prompts.NEW_VALUE_CLOSE}",
    lambda h: f"{HOSTILE_MARK} {prompts.NEW_VALUE_CLOSE} wrong order {prompts.NEW_VALUE_OPEN} r{h}",
)


def _joint_breaks(h: int, ids: list[str]) -> list[str]:
    pid = ids[0] if ids else "x"
    valid = json.dumps({"reasoning": HOSTILE_MARK, "updates": {pid: f"Think step by step (joint {h})."}})
    return [valid[: len(valid) // 2],
            '{"reasoning": "' + HOSTILE_MARK + '", "updates": {"' + pid + '": ' + "[" * 50_000 + "]" * 50_000 + "}}",
            f"{HOSTILE_MARK} I would rather not answer in JSON.",
            json.dumps({"reasoning": HOSTILE_MARK, "updates": {"no_such_parameter": "x", pid: None}}),
            json.dumps({"reasoning": HOSTILE_MARK, "updates": [pid]})]


def _ids(text: str) -> list[str]:
    found = re.search(r"valid parameter ids: ([^\n]*?)\.\n", text) or re.search(r"these parameter ids: ([^\n]*?), with", text)
    return [i.strip() for i in found.group(1).split(",")] if found else []


def hostile_reply(body: dict) -> str:
    """The reply for a request: a function of the request alone; hostile for first optimizer requests and some re-asks."""
    last = body["messages"][-1]["content"]
    text = last if isinstance(last, str) else json.dumps(last)
    whole = json.dumps(body.get("messages"), sort_keys=True)
    h = int(hashlib.sha256(whole.encode()).hexdigest()[:8], 16)
    optimizer = prompts.NEW_VALUE_OPEN in text or bool(body.get("response_format"))
    first = sum(m.get("role") == "assistant" for m in body["messages"]) == 0
    if not optimizer or (not first and (h % 1000) / 1000 >= HOSTILE_SHARE):
        if body.get("response_format"):  # a joint update that changes the first parameter (a real proposal)
            ids = _ids(whole.replace("\\n", "\n"))
            updates = {ids[0]: f"Solve it step by step and end with 'Answer: <answer>' (joint {h % 97})."} if ids else {}
            return json.dumps({"reasoning": "tighten the instruction", "updates": updates})
        return wire_reply(body)
    if body.get("response_format"):
        breaks = _joint_breaks(h, _ids(whole.replace("\\n", "\n")))
        return breaks[h % len(breaks)]
    return _TGD_BREAKS[h % len(_TGD_BREAKS)](h)


# --------------------------------------------------------------------------- independent checks of a run's logs


def _strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for v in value.values() for s in _strings(v)]
    if isinstance(value, list):
        return [s for v in value for s in _strings(v)]
    return []


def proposals(reply: str) -> set[str]:
    """Every value an optimizer reply could be read as proposing (stripped): each delimited span, each JSON string."""
    found: set[str] = set()
    start = reply.find(prompts.NEW_VALUE_OPEN)
    while start >= 0:
        end = reply.find(prompts.NEW_VALUE_CLOSE, start)
        if end < 0:
            break
        found.add(reply[start + len(prompts.NEW_VALUE_OPEN):end].strip())
        start = reply.find(prompts.NEW_VALUE_OPEN, start + 1)
    if len(reply) < 1_000_000 and reply.lstrip().startswith("{"):
        try:
            decoded = json.loads(reply)
        except (ValueError, RecursionError):
            decoded = None
        found |= {s.strip() for s in _strings(decoded)}
    return found


def corrupted_versions(parameters: list[dict], calls: list[dict]) -> list[dict]:
    """Parameter versions whose value no answered optimizer reply proposed (and that is no earlier value: a revert)."""
    proposed: set[str] = set()
    for call in calls:
        if call.get("phase") == "optimizer" and call.get("error") is None and isinstance(call.get("reply"), str):
            proposed |= proposals(call["reply"])
    seen: dict[str, set[str]] = {}
    bad = []
    for record in parameters:
        value = record["value"] if isinstance(record["value"], str) else json.dumps(record["value"])
        earlier = seen.setdefault(record["param"], set())
        unproposed = record["version"] > 0 and value.strip() not in proposed and value not in earlier
        if unproposed or HOSTILE_MARK in value:  # HOSTILE_MARK in a value: a broken reply's text became a value
            bad.append(record)
        earlier.add(value)
    return bad


def unexplained_hostile(calls: list[dict], events: list[dict]) -> list[dict]:
    """Hostile optimizer replies followed neither by a re-ask (quoting the reply) nor by a rejection event of that step."""
    assistant_turns = {m["content"] for c in calls for m in c.get("messages", []) if m.get("role") == "assistant"}
    rejected_steps = {e.get("step") for e in events if e.get("kind") == "optimizer_reply_rejected"}
    return [c for c in calls if c.get("phase") == "optimizer" and HOSTILE_MARK in (c.get("reply") or "")
            and c["reply"] not in assistant_turns and c.get("step") not in rejected_steps]
