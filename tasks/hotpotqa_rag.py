"""HotpotQA multi-hop RAG: query writer -> BM25 -> second-hop query writer -> BM25 -> answer (MIPRO's HotPotQA program).

Retrieval runs over the question's own 10 context paragraphs (the distractor setting), with rank_bm25's Okapi
BM25, as a traced op so it appears in the graph and the trace. Trainable: each module's instruction and the
answer module's demonstrations (text).

Protocols: `strict` (ours: SQuAD/HotpotQA-normalized EM or F1 of the text after the last 'Answer:') and `gepa`
(GEPA's: DSPy's answer exact match on the '[[ ## answer ## ]]' field of a DSPy chat-adapter reply, the answer
module instructed in DSPy's signature style; tasks/protocols/gepa.py).
"""
from __future__ import annotations

import json
import random
import re
import string
from collections import Counter
from pathlib import Path
from typing import Any

from rank_bm25 import BM25Okapi

from tasks.protocols import STRICT, answer_format, choose_protocol
from tasks.protocols import gepa
from tasks.protocols.strict import answer_line
from tasks.validators import answer_line as answer_line_validator
from tasks.validators import answer_lines_in_demos, line_marker, literal

from textgrad_core.engines import EngineSet
from textgrad_core.errors import ConfigError
from textgrad_core.loss import MetricResult
from textgrad_core.ops import FormattedLLMCall, traced
from textgrad_core.task import (DataError, Example, RubricItem, SimWorld, Splits, Task, check_fits, check_size,
                                display_path, read_json)
from textgrad_core.variable import Parameter, ParameterSet, Variable

DATA_PATH = Path(__file__).parent / "data" / "hotpotqa" / "dev_distractor_first53.json"

INITIAL_QUERY_INSTRUCTION = (
    "Write a search query that finds a passage needed to answer the question. "
    "Reply with one line of the form 'Query: <search query>'."
)
INITIAL_FOLLOWUP_INSTRUCTION = (
    "Given the question and the passages found so far, write a search query for the information that is still "
    "missing to answer the question. Reply with one line of the form 'Query: <search query>'."
)
INITIAL_ANSWER_INSTRUCTION = (
    "Answer the question using the passages. Think step by step, then give a short factual answer. "
    "The last line of your response should be of the following format: 'Answer: <answer>'."
)
# Invented (not from HotpotQA), so no evaluation question leaks into the prompt.
INITIAL_DEMOS = (
    "Question: Which river flows through the capital of the country where the Eiffel Tower stands?\n"
    "Passages: «Eiffel Tower» The Eiffel Tower is a landmark in Paris, France. "
    "«Paris» Paris, the capital of France, lies on the Seine.\n"
    "Answer: the Seine"
)

QUERY_TEMPLATE = """Question:
{question}"""

FOLLOWUP_TEMPLATE = """Question:
{question}

Passages found so far:
{passages}"""

ANSWER_TEMPLATE = """Examples:
{demos}

Passages:
{first_hop}
{second_hop}

Question:
{question}"""


# ---- retrieval ---------------------------------------------------------------------------------

_STOPWORDS = frozenset("a an and are as at be by did do does for from had has have in is it its of on or that the "
                       "this to was were what when where which who whom whose why with".split())
_TITLE = re.compile(r"^«(.+?)»", re.MULTILINE)


def tokens(text: str) -> list[str]:
    """Lower-cased word tokens without common stopwords (BM25's view of a text)."""
    return [t for t in re.findall(r"\w+", text.lower()) if t not in _STOPWORDS]


def format_passage(title: str, sentences: list[str]) -> str:
    """One context paragraph as one line: '«title» text'."""
    return f"«{title}» " + " ".join(s.strip() for s in sentences if s.strip())


def titles_in(passages: str) -> list[str]:
    """The titles of the '«title» text' lines of a retrieval result, in order."""
    return _TITLE.findall(passages)


@traced(output_role="passages retrieved by BM25, one '«title» text' line each")
def retrieve(query: str, passages: list[str], k: int = 2, exclude: str = "") -> str:
    """BM25 (Okapi) over the question's context passages: the k best for the query, skipping passages in `exclude`.

    The query is the text after the last 'Query:' of the query writer's reply (all of it if there is none).
    Ties keep the passages' original order.
    """
    found = re.split(r"query\s*:", query, flags=re.IGNORECASE)
    text = found[-1] if len(found) > 1 else query
    skip = set(exclude.splitlines())
    pool = [p for p in passages if p not in skip]
    if not pool:
        return ""
    scores = BM25Okapi([tokens(p) for p in pool]).get_scores(tokens(text))
    best = sorted(range(len(pool)), key=lambda i: (-scores[i], i))[:k]
    return "\n".join(pool[i] for i in best)


PROTOCOLS = (STRICT, "gepa")


def parse_answer(response: str) -> tuple[str, bool]:
    """(answer, whether it came from an 'Answer:' line): the rest of the line after the last 'Answer:' (when that
    is empty, the next non-empty line: 'Answer:\nParis' reads 'Paris'), else the response's last non-empty line."""
    line = answer_line(response)
    if line is not None:
        return line, True
    lines = [line.strip() for line in response.splitlines() if line.strip()]
    return (lines[-1] if lines else ""), False


@traced(output_role="the system's answer and the titles of the passages it retrieved")
def answer_with_sources(response: str, first_hop: str, second_hop: str) -> dict[str, Any]:
    """The answer after the last 'Answer:' of the response (else its last line), with the titles of every retrieved passage."""
    answer, from_line = parse_answer(response)
    return {"answer": answer, "answer_line": from_line,
            "retrieved_titles": titles_in(first_hop) + titles_in(second_hop)}


@traced(output_role="the system's answer (the reply's answer field) and the titles of the passages it retrieved")
def answer_field_with_sources(response: str, first_hop: str, second_hop: str) -> dict[str, Any]:
    """The content of the reply's first '[[ ## answer ## ]]' field (None without one), with the retrieved titles."""
    answer = gepa.answer_field(response)
    return {"answer": answer, "answer_line": answer is not None,
            "retrieved_titles": titles_in(first_hop) + titles_in(second_hop)}


# ---- metric ------------------------------------------------------------------------------------

def normalize_answer(text: str) -> str:
    """SQuAD/HotpotQA normalization: lower case, no punctuation, no articles, single spaces."""
    text = text.lower()
    text = "".join(ch for ch in text if ch not in set(string.punctuation))
    text = re.sub(r"\b(a|an|the)\b", " ", text)
    return " ".join(text.split())


def exact_match(prediction: str, gold: str) -> float:
    return float(normalize_answer(prediction) == normalize_answer(gold))


def token_f1(prediction: str, gold: str) -> float:
    """HotpotQA's token F1 (a yes/no/noanswer mismatch scores 0)."""
    pred, ref = normalize_answer(prediction), normalize_answer(gold)
    special = ("yes", "no", "noanswer")
    if (pred in special or ref in special) and pred != ref:
        return 0.0
    common = Counter(pred.split()) & Counter(ref.split())
    same = sum(common.values())
    if same == 0:
        return 0.0
    precision, recall = same / len(pred.split()), same / len(ref.split())
    return 2 * precision * recall / (precision + recall)


def hotpotqa_metric(prediction: Any, example: Example, score: str = "em") -> MetricResult:
    """EM (or token F1) of the answer, with the supporting passages that were not retrieved, in words."""
    if isinstance(prediction, dict):
        answer, from_line = str(prediction.get("answer", "")), bool(prediction.get("answer_line", True))
        retrieved = prediction.get("retrieved_titles")
    else:
        (answer, from_line), retrieved = parse_answer(str(prediction)), None
    gold = str(example.target)
    em, f1 = exact_match(answer, gold), token_f1(answer, gold)
    value = em if score == "em" else f1
    if not answer:
        head = f"Wrong: expected '{gold}', but no answer was given: the final line 'Answer: <answer>' is missing."
    else:
        verdict = "Correct" if em == 1.0 else ("Partly correct" if f1 > 0 else "Wrong")
        head = f"{verdict}: expected '{gold}', got '{answer}' (EM {em:.0f}, F1 {f1:.2f})."
        if not from_line:
            head += " The response has no 'Answer: <answer>' line, so its last line was taken; end with that line."
    supporting = list(example.meta.get("supporting_titles", []))
    if retrieved is not None and supporting:
        missing = [t for t in supporting if t not in retrieved]
        got = len(supporting) - len(missing)
        if missing:
            head += (f" Supporting passages not retrieved ({got} of {len(supporting)} retrieved): "
                     + ", ".join(f"'{t}'" for t in missing) + ".")
        else:
            head += f" All {len(supporting)} supporting passages were retrieved."
    return MetricResult(score=value, feedback=head)


# ---- data --------------------------------------------------------------------------------------

def load_hotpotqa(path: str | Path | None = None) -> list[Example]:
    """HotpotQA (distractor format) in file order: input = question, meta = passages and supporting titles."""
    file = Path(path) if path else DATA_PATH
    if not file.exists():
        raise ConfigError(f"HotpotQA file {file} not found: point task.data_path at a HotpotQA JSON file in the "
                          "distractor format (e.g. hotpot_dev_distractor_v1.json), or leave it null.")
    rows = read_json(file)
    if not isinstance(rows, list):
        raise DataError(f"{display_path(file)} is not a HotpotQA file: it needs a list of {{'_id', 'question', "
                        "'answer', 'supporting_facts', 'context'}.")
    out = []
    for i, r in enumerate(rows):
        try:
            supporting = list(dict.fromkeys(title for title, _ in r["supporting_facts"]))
            out.append(Example(id=f"hotpotqa-{r['_id']}", input=r["question"], target=r["answer"],
                               meta={"passages": [format_passage(t, s) for t, s in r["context"]],
                                     "supporting_titles": supporting, "type": r.get("type"), "level": r.get("level")}))
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise DataError(f"{display_path(file)} record {i}: not a HotpotQA record (an object with '_id', "
                            f"'question', 'answer', 'supporting_facts', 'context'): {exc!r}.") from None
    return out


# ---- the task ----------------------------------------------------------------------------------

class HotpotQARAGTask(Task):
    """Two-hop retrieval-augmented question answering; EM (or F1) of the answer."""

    name = "hotpotqa_rag"
    description = ("HotpotQA multi-hop RAG over each question's 10 distractor-setting paragraphs "
                   "(shipped sample: 15 train / 18 val / 20 test).")

    def __init__(self, data_path: str | None = None, n_train: int = 15, n_val: int = 18, n_test: int | None = None,
                 seed: int | None = None, k: int = 2, score: str = "em", protocol: str = STRICT):
        # GEPA's protocol describes this task's own program; a subclass with its own system is strict.
        reproduces = type(self).forward is HotpotQARAGTask.forward
        self.protocol = choose_protocol(self.name, protocol, PROTOCOLS if reproduces else (STRICT,))
        if self.protocol == "gepa" and score != "em":
            raise ConfigError(f"task.score={score} with task.protocol=gepa: GEPA's HotpotQA metric is exact match; "
                              "drop task.score (or use task.protocol=strict for F1).")
        if score not in ("em", "f1"):
            raise ConfigError(f"Unknown task.score '{score}': use 'em' (exact match) or 'f1' (token F1).")
        if k < 1:
            raise ConfigError(f"task.k must be at least 1 (passages retrieved per hop), not {k}.")
        check_size("n_train", n_train)
        check_size("n_val", n_val)
        check_size("n_test", n_test, optional=True)
        self.data_path = data_path
        self.n_train = n_train
        self.n_val = n_val
        self.n_test = n_test
        self.seed = seed
        self.k = k
        self.score = score

    def load_splits(self) -> Splits:
        """In file order (or shuffled with random.Random(seed) when `seed` is set): the first n_train examples train,
        the next n_val validation, the next n_test test (null: all the rest). Shipped file: 15 / 18 / 20."""
        rows = load_hotpotqa(self.data_path)
        if self.seed is not None:
            random.Random(self.seed).shuffle(rows)
        sizes = {"n_train": self.n_train, "n_val": self.n_val}
        if self.n_test is not None:
            sizes["n_test"] = self.n_test
        check_fits(sizes, len(rows), display_path(Path(self.data_path) if self.data_path else DATA_PATH),
                   rest="" if self.n_test is not None else "test",
                   hint="or point task.data_path at the full dev set (hotpot_dev_distractor_v1.json)")
        a, b = self.n_train, self.n_train + self.n_val
        c = len(rows) if self.n_test is None else b + self.n_test
        return Splits(train=rows[:a], val=rows[a:b], test=rows[b:c])

    def initial_parameters(self) -> list[Parameter]:
        query_rule = "Keep the reply format 'Query: <search query>'."
        gepa_field = literal("[[ ## answer ## ]]", "the answer field GEPA's scorer reads")
        return [
            Parameter(value=INITIAL_QUERY_INSTRUCTION, name="query.instruction", constraints=[query_rule],
                      role="instruction of the model that writes the first search query",
                      validators=[line_marker("Query:", "the retriever")]),
            Parameter(value=INITIAL_FOLLOWUP_INSTRUCTION, name="followup_query.instruction", constraints=[query_rule],
                      role="instruction of the model that writes the second-hop search query from the first passages",
                      validators=[line_marker("Query:", "the retriever")]),
            Parameter(value=gepa.ANSWER_INSTRUCTION if self.protocol == "gepa" else INITIAL_ANSWER_INSTRUCTION,
                      name="answer.instruction",
                      constraints=["Keep the reply format: the answer in the field '[[ ## answer ## ]]'."
                                   if self.protocol == "gepa" else
                                   "Keep the required final line format 'Answer: <answer>'."],
                      role="instruction of the model that answers the question from the retrieved passages",
                      validators=[gepa_field if self.protocol == "gepa" else answer_line_validator("Answer: <answer>")]),
            Parameter(value=INITIAL_DEMOS, name="answer.demos",
                      role="worked examples (question, passages, answer) shown to the answer model",
                      constraints=["Each example ends with a line 'Answer: <answer>'."],
                      validators=[answer_lines_in_demos()]),
        ]

    async def forward(self, example: Example, params: ParameterSet, engines: EngineSet) -> Variable:
        engine = engines["forward"]
        question = Variable(example.input, role="multi-hop question")
        passages = Variable(list(example.meta["passages"]), role="the question's 10 context paragraphs to search")
        query_llm = FormattedLLMCall(engine, QUERY_TEMPLATE, {"question": "multi-hop question"},
                                     params["query.instruction"], name="query_writer",
                                     output_role="first search query")
        first_hop = retrieve(await query_llm.acall(question=question), passages, self.k)
        followup_llm = FormattedLLMCall(engine, FOLLOWUP_TEMPLATE,
                                        {"question": "multi-hop question", "passages": "passages of the first hop"},
                                        params["followup_query.instruction"], name="followup_query_writer",
                                        output_role="second-hop search query")
        second_hop = retrieve(await followup_llm.acall(question=question, passages=first_hop), passages, self.k,
                              exclude=first_hop)
        answer_llm = FormattedLLMCall(engine, ANSWER_TEMPLATE,
                                      {"demos": "worked examples", "first_hop": "passages of the first hop",
                                       "second_hop": "passages of the second hop", "question": "multi-hop question"},
                                      params["answer.instruction"], name="answer_writer",
                                      output_role="reasoning and answer ending with 'Answer: <answer>'")
        response = await answer_llm.acall(demos=params["answer.demos"], first_hop=first_hop, second_hop=second_hop,
                                          question=question)
        if self.protocol == "gepa":
            return answer_field_with_sources(response, first_hop, second_hop)
        return answer_with_sources(response, first_hop, second_hop)

    def metric(self, prediction: Any, example: Example) -> MetricResult:
        """strict: EM (or token F1) of the answer, with the supporting passages that were not retrieved, in words;
        gepa: DSPy's answer exact match of the reply's answer field."""
        if self.protocol == "gepa":
            answer = prediction.get("answer") if isinstance(prediction, dict) else gepa.answer_field(str(prediction))
            return gepa.answer_metric(answer, example.target)
        return hotpotqa_metric(prediction, example, self.score)

    def sim_world(self, splits: Splits) -> SimWorld:
        every = splits.train + splits.val + splits.test
        return SimWorld(task=self.name, rubric=RUBRIC, answers={e.input: e.target for e in every},
                        base_accuracy=0.3, max_accuracy=0.9, answer_kind="text",
                        answer_format=answer_format(self.protocol))

    def info(self) -> dict[str, Any]:
        return {**super().info(), "protocol": self.protocol}


# Each item belongs in the module whose job it concerns (`applies_to`), so credit has to reach the right module.
RUBRIC = [
    RubricItem(key="bridge", guidance="Identify the bridge entity that links the two supporting passages and "
               "search for it in the second hop.",
               keywords=["bridge entity"],
               hint="it should ask to identify the bridge entity linking the passages and search for it",
               echo="(Found the bridge entity linking the passages.)",
               applies_to=["followup_query.instruction"]),
    RubricItem(key="span", guidance="Answer with the shortest span that answers the question (a name, date, number "
               "or yes/no), without extra words.",
               keywords=["shortest span"],
               hint="it should ask for the shortest span that answers the question, without extra words",
               echo="(Kept the answer to the shortest span.)",
               applies_to=["answer.instruction", "answer.demos"]),
    RubricItem(key="ground", guidance="Quote the sentence of the passages that supports the answer before giving it.",
               keywords=["quote the sentence", "quoted the supporting sentence"],
               hint="it should ask to quote the sentence of the passages that supports the answer",
               echo="(Quoted the supporting sentence.)",
               applies_to=["answer.instruction", "answer.demos"]),
    RubricItem(key="compare", guidance="For comparison questions, look up the same attribute for both entities "
               "before comparing them.",
               keywords=["same attribute"],
               hint="it should say to look up the same attribute for both entities of a comparison question",
               echo="(Looked up the same attribute for both entities.)",
               applies_to=["query.instruction", "followup_query.instruction"]),
]
