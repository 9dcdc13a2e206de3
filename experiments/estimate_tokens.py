"""Token counts for a cost estimate: the model's own tokenizer where one ships offline, else characters / 4.

OpenAI's encodings ship inside the `bpe-openai` wheel (cl100k_base for GPT-3.5/GPT-4, o200k_base for GPT-4o, GPT-4.1
and the o-series), so they count exactly without a download. Every other model (Anthropic's, local models) is counted
as characters / 4, and the estimate says so.
"""
from __future__ import annotations

import functools
import math
from typing import Any, Iterable, Mapping

CHARS_PER_TOKEN = 4
# OpenAI's chat format: each message costs a few tokens of framing, and the reply is primed with a few more
# (the figures OpenAI documents for its chat models).
TOKENS_PER_MESSAGE = 3
TOKENS_PER_REPLY = 3

# Model name prefixes -> encoding, longest prefix first (gpt-4o before gpt-4).
_ENCODINGS = (("gpt-4o", "o200k_base"), ("gpt-4.1", "o200k_base"), ("gpt-4.5", "o200k_base"), ("gpt-5", "o200k_base"),
              ("o1", "o200k_base"), ("o3", "o200k_base"), ("o4", "o200k_base"), ("chatgpt-4o", "o200k_base"),
              ("gpt-4", "cl100k_base"), ("gpt-3.5", "cl100k_base"), ("gpt-35", "cl100k_base"))


def encoding_name(model: str) -> str | None:
    """The name of the OpenAI encoding a model uses, or None when it has no known offline tokenizer."""
    for prefix, name in _ENCODINGS:
        if model.startswith(prefix):
            return name
    return None


@functools.lru_cache(maxsize=None)
def _encoding(name: str) -> Any:
    try:
        import bpe_openai
    except ImportError:  # the dependency is declared; a broken install falls back to the stated approximation
        return None
    return bpe_openai.get_encoding(name)


class TokenCounter:
    """Counts the tokens of one model's requests and replies."""

    def __init__(self, model: str):
        self.model = model
        name = encoding_name(model)
        self._encoding = _encoding(name) if name else None
        self.method = name if self._encoding is not None else f"characters/{CHARS_PER_TOKEN}"

    @property
    def exact(self) -> bool:
        """True when the model's own tokenizer counts (else the characters/4 approximation)."""
        return self._encoding is not None

    def text(self, text: str) -> int:
        """Tokens of a piece of text."""
        if self._encoding is None:
            return math.ceil(len(text) / CHARS_PER_TOKEN)
        # A prompt may quote special-token text; the API counts it as plain text, so must we.
        return len(self._encoding.encode(text, disallowed_special=()))

    def messages(self, messages: Iterable[Mapping[str, Any]]) -> int:
        """Prompt tokens of a chat request: every message's content, with the chat format's framing when exact."""
        messages = list(messages)
        body = sum(self.text(str(m.get("content", ""))) for m in messages)
        if self._encoding is None:
            return body
        return body + TOKENS_PER_MESSAGE * len(messages) + TOKENS_PER_REPLY


__all__ = ["CHARS_PER_TOKEN", "TOKENS_PER_MESSAGE", "TOKENS_PER_REPLY", "TokenCounter", "encoding_name"]
