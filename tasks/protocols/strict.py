"""The answer parsing our strict scorers share: what follows the last 'Answer:' of a response.

Rules (documented in docs/tasks.md):
- The answer part is the text after the LAST 'Answer:' (case-insensitive) of the response. When nothing but
  whitespace follows it on its own line, the answer part starts on the next non-empty line ('Answer:\\n42').
- A numeric answer is the FIRST number of the answer part, so a remark after it never changes it:
  'Answer: 24 (because 2 + 3 = 5)' reads 24, 'Answer: 18 apples, 4 left' reads 18.
- Without any 'Answer:' the last number (or the last non-empty line) of the whole response is taken, and the
  feedback says so.
"""
from __future__ import annotations

import re

_ANSWER_MARK = re.compile(r"answer\s*:", re.IGNORECASE)
# A number as people write it in an answer: sign, '$', thousands separators, decimals.
NUMBER = re.compile(r"-?\$?\d[\d,]*(?:\.\d+)?")
INTEGER = re.compile(r"-?\d+")


def answer_part(response: str) -> str | None:
    """The text after the last 'Answer:' (from the next non-empty line when its own line is empty), else None."""
    marks = list(_ANSWER_MARK.finditer(response))
    if not marks:
        return None
    rest = response[marks[-1].end():]
    line, _, after = rest.partition("\n")
    if line.strip():
        return rest.strip()
    return after.strip()


def answer_line(response: str) -> str | None:
    """The first line of the answer part (see `answer_part`), stripped; None without an 'Answer:'."""
    part = answer_part(response)
    if part is None:
        return None
    return part.splitlines()[0].strip() if part else ""


def first_number_after_answer(response: str, pattern: re.Pattern[str] = NUMBER) -> tuple[str | None, bool]:
    """(the number, whether it came from the answer part): the first number after the last 'Answer:', else the
    last number anywhere in the response, else None."""
    part = answer_part(response)
    if part is not None:
        found = pattern.search(part)
        if found:
            return found.group(0), True
    numbers = pattern.findall(response)
    return (numbers[-1] if numbers else None), False


__all__ = ["INTEGER", "NUMBER", "answer_line", "answer_part", "first_number_after_answer"]
