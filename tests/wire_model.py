"""A deterministic stand-in for a model behind the local provider server: a reply from the request alone."""
from __future__ import annotations

import hashlib
import json

from textgrad_core import prompts


def wire_reply(body: dict) -> str:
    """New values when the request asks for one, JSON when it asks for JSON, else an answer line that doubles as
    feedback; the same request always gets the same reply."""
    last = body["messages"][-1]["content"]
    text = last if isinstance(last, str) else json.dumps(last)
    h = int(hashlib.sha256(text.encode()).hexdigest()[:6], 16)
    if prompts.NEW_VALUE_OPEN in text:
        return (f"{prompts.NEW_VALUE_OPEN}\nSolve the problem step by step, check the count twice (revision {h % 97}),"
                f" and end with 'Answer: <answer>'.\n{prompts.NEW_VALUE_CLOSE}")
    if body.get("response_format"):
        return json.dumps({"reasoning": "keep the values", "updates": {}})
    return f"Answer: {h % 9}. The instruction should say to count each item once and to check the total."
