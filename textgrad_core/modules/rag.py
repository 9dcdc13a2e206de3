"""Retrieval-augmented generation: a BM25 retriever op (bm25s), query writers, a reader; one hop or several.

Graph of `MultiHopRAG` (hops=2): `<name>.query` (LLM, fed by the query instruction) -> `<name>.retrieve` (the
retriever, fed by the query and the `top_k` parameter) -> `<name>.followup` (LLM: the question and the passages so
far) -> `<name>.retrieve` (skipping what was found) -> `<name>.reader` (LLM: every passage and the question).
`RAG` is the one-hop case. Parameters: `<name>.query.instruction`, `<name>.followup.instruction` (hops > 1),
`<name>.reader.instruction` (text) and `<name>.top_k` (number: passages per hop).
"""
from __future__ import annotations

import re
from typing import Any

from textgrad_core.engines import Engine
from textgrad_core.errors import ConfigError
from textgrad_core.modules import prompts
from textgrad_core.modules.base import Module, ParameterSpec, whole_number
from textgrad_core.ops import FormattedLLMCall, as_variable, join
from textgrad_core.variable import OpRecord, ParameterSet, Variable

_STOPWORDS = frozenset("a an and are as at be by did do does for from had has have in is it its of on or that the "
                       "this to was were what when where which who whom whose why with".split())
_QUERY = re.compile(r"query\s*:", re.IGNORECASE)


def tokens(text: str) -> list[str]:
    """Lower-cased word tokens without common stopwords (BM25's view of a text)."""
    return [t for t in re.findall(r"\w+", text.lower()) if t not in _STOPWORDS]


def query_text(reply: str) -> str:
    """The search query in a query writer's reply: the text after its last 'Query:' (all of it when there is none)."""
    parts = _QUERY.split(reply)
    return (parts[-1] if len(parts) > 1 else reply).strip()


def bm25_rank(query: str, passages: list[str], k: int) -> list[int]:
    """Indexes of the k passages BM25 (bm25s, Okapi) scores highest for the query; ties keep the passages' order."""
    import bm25s  # imported here: a plain `import textgrad_core` loads no retrieval library

    if not passages:
        return []
    corpus = [tokens(p) or ["<empty>"] for p in passages]  # bm25s needs a token in every document
    index = bm25s.BM25()
    index.index(corpus, show_progress=False)
    wanted = [t for t in tokens(query) if any(t in doc for doc in corpus)]
    scores = index.get_scores(wanted) if wanted else [0.0] * len(passages)
    return sorted(range(len(passages)), key=lambda i: (-float(scores[i]), i))[:k]


def retrieve(name: str, query: Variable, passages: Variable, top_k: Variable, k: int,
             exclude: Variable | None = None) -> Variable:
    """The retriever op: the k best passages for the query's text, skipping those of `exclude`; one node."""
    skip = set(str(exclude.value).splitlines()) if exclude is not None else set()
    pool = [p for p in passages.value if p not in skip]
    found = [pool[i] for i in bm25_rank(query_text(str(query.value)), pool, k)]
    inputs = [("query", query), ("passages", passages), ("top_k", top_k)] + ([("exclude", exclude)] if exclude else [])
    op = OpRecord(name=f"{name}.retrieve", kind="function", inputs=inputs,
                  description=("BM25 (bm25s, Okapi) over the passages: the top_k best for the text after the query's "
                               "last 'Query:', skipping passages already found."))
    return Variable(value="\n".join(found), role=f"the {k} passages BM25 retrieved, one per line", op=op)


class MultiHopRAG(Module):
    """Query writer -> retrieve, `hops` times (later hops see the passages so far) -> reader."""

    def __init__(self, name: str = "rag", hops: int = 2, top_k: int = 2, max_top_k: int = 10,
                 query_instruction: str = prompts.RAG_QUERY_INSTRUCTION,
                 followup_instruction: str = prompts.RAG_FOLLOWUP_INSTRUCTION,
                 reader_instruction: str = prompts.RAG_READER_INSTRUCTION, reader_constraints: list[str] | None = None):
        super().__init__(name)
        if not isinstance(hops, int) or hops < 1:
            raise ConfigError(f"MultiHopRAG hops must be a whole number >= 1, not {hops!r}.")
        self.hops = hops
        self.max_top_k = max_top_k
        self.initial = {"query": query_instruction, "followup": followup_instruction, "reader": reader_instruction,
                        "top_k": top_k}
        self.reader_constraints = list(reader_constraints or [])

    def specs(self) -> list[ParameterSpec]:
        query_rule = ["Keep the reply format 'Query: <search query>'."]
        specs = [ParameterSpec("query.instruction", self.initial["query"], "instruction of the model that writes the "
                               "first search query", constraints=query_rule)]
        if self.hops > 1:
            specs.append(ParameterSpec("followup.instruction", self.initial["followup"], "instruction of the model "
                                       "that writes the next-hop search query from the passages so far",
                                       constraints=query_rule))
        specs += [
            ParameterSpec("reader.instruction", self.initial["reader"], "instruction of the model that answers from "
                          "the retrieved passages", constraints=self.reader_constraints),
            ParameterSpec("top_k", self.initial["top_k"], f"passages retrieved per hop (1..{self.max_top_k})",
                          kind="number", constraints=[f"A whole number from 1 to {self.max_top_k}."]),
        ]
        return specs

    async def acall(self, engine: Engine, question: Variable | str, passages: Variable | list[str],
                    params: ParameterSet | None = None, return_hops: bool = False) -> Any:
        """Retrieve over `passages` in `hops` hops and answer; the reader's response (and the hops when asked)."""
        question = as_variable(question, "question")
        passages = as_variable(list(passages.value if isinstance(passages, Variable) else passages),
                               "the passages to search")
        top_k_param = self.param(params, "top_k")
        k = whole_number(top_k_param, 1, self.max_top_k)
        first = FormattedLLMCall(engine, prompts.RAG_QUERY_TEMPLATE, {"question": "question"},
                                 self.param(params, "query.instruction"), name=f"{self.name}.query",
                                 output_role="first search query")
        hops = [retrieve(self.name, await first.acall(question=question), passages, top_k_param, k)]
        followup = None
        for _ in range(1, self.hops):
            followup = followup or FormattedLLMCall(
                engine, prompts.RAG_FOLLOWUP_TEMPLATE, {"question": "question", "passages": "passages found so far"},
                self.param(params, "followup.instruction"), name=f"{self.name}.followup",
                output_role="next-hop search query")
            so_far = hops[0] if len(hops) == 1 else join(*hops, role="passages found so far")
            query = await followup.acall(question=question, passages=so_far)
            hops.append(retrieve(self.name, query, passages, top_k_param, k, exclude=so_far))
        found = hops[0] if len(hops) == 1 else join(*hops, role="every retrieved passage")
        reader_instruction = self.param(params, "reader.instruction")
        reader = FormattedLLMCall(engine, prompts.RAG_READER_TEMPLATE,
                                  {"passages": "retrieved passages", "question": "question"}, reader_instruction,
                                  name=f"{self.name}.reader", output_role="answer from the passages, ending with 'Answer:'")
        response = await reader.acall(passages=found, question=question)
        self.record(params, str(question.value), str(response.value))
        return (response, hops) if return_hops else response


class RAG(MultiHopRAG):
    """One hop: query writer -> retrieve -> reader."""

    def __init__(self, name: str = "rag", **options: Any):
        super().__init__(name, hops=1, **options)
