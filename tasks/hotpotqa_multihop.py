"""HotpotQA with the multi-hop RAG module (textgrad_core.modules.MultiHopRAG): query writer -> BM25 (bm25s) ->
follow-up query writer -> BM25 -> reader, over each question's 10 distractor-setting paragraphs.

Data: the shipped first 53 HotpotQA dev questions (CC BY-SA 4.0, tasks/data/hotpotqa/LICENSE), split as the
hotpotqa_rag task splits them. Trainable: `rag.query.instruction`, `rag.followup.instruction`,
`rag.reader.instruction`, `rag.top_k`.
"""
from __future__ import annotations

from typing import Any

from textgrad_core.engines import EngineSet
from textgrad_core.modules.rag import MultiHopRAG
from textgrad_core.task import Example, SimWorld, Splits
from textgrad_core.variable import OpRecord, Parameter, ParameterSet, Variable

from tasks.hotpotqa_rag import INITIAL_ANSWER_INSTRUCTION, RUBRIC, HotpotQARAGTask, parse_answer, titles_in
from tasks.validators import answer_line, declare, line_marker, whole_number

# The hotpotqa_rag rubric's parameters, under the module's names (its demos item has no counterpart here).
RENAMED = {"query.instruction": "rag.query.instruction", "followup_query.instruction": "rag.followup.instruction",
           "answer.instruction": "rag.reader.instruction"}


class HotpotQAMultiHopTask(HotpotQARAGTask):
    """Multi-hop RAG (bm25s) question answering; EM (or F1) of the answer, with the supporting passages missed."""

    name = "hotpotqa_multihop"

    def __init__(self, hops: int = 2, **options: Any):
        super().__init__(**options)
        self.module = MultiHopRAG("rag", hops=hops, top_k=self.k, reader_instruction=INITIAL_ANSWER_INSTRUCTION,
                                  reader_constraints=["Keep the required final line format 'Answer: <answer>'."])
        self.description = f"HotpotQA {hops}-hop RAG module over bm25s; " + self.description

    def initial_parameters(self) -> list[Parameter]:
        queries = ["rag.query.instruction"] + (["rag.followup.instruction"] if self.module.hops > 1 else [])
        return declare(self.module.parameters(), {
            **{name: [line_marker("Query:", "the retriever")] for name in queries},
            "rag.reader.instruction": [answer_line("Answer: <answer>")],
            "rag.top_k": [whole_number(1, self.module.max_top_k)]})

    async def forward(self, example: Example, params: ParameterSet, engines: EngineSet) -> Variable:
        question = Variable(example.input, role="multi-hop question")
        passages = Variable(list(example.meta["passages"]), role="the question's 10 context paragraphs to search")
        response, hops = await self.module.acall(engines["forward"], question, passages, params, return_hops=True)
        answer, from_line = parse_answer(str(response.value))
        titles = [t for hop in hops for t in titles_in(str(hop.value))]
        op = OpRecord(name="answer_with_sources", kind="function", inputs=[("response", response)] +
                      [(f"hop{i + 1}", h) for i, h in enumerate(hops)],
                      description="The answer after the reader's last 'Answer:', with the titles of every retrieved passage.")
        return Variable({"answer": answer, "answer_line": from_line, "retrieved_titles": titles},
                        role="the system's answer and the titles of the passages it retrieved", op=op)

    def sim_world(self, splits: Splits) -> SimWorld:
        world = super().sim_world(splits)
        rubric = [i.model_copy(update={"applies_to": [RENAMED[a] for a in i.applies_to if a in RENAMED]})
                  for i in RUBRIC]
        return world.model_copy(update={"rubric": rubric})
