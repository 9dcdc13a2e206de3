"""The simulator engine: deterministic, moves with the rubric, answers in the requested formats."""
import asyncio

from textgrad_core.engines import LLMRequest, build_engine
from textgrad_core.engines.sim import SimWorld
from textgrad_core.loss import JudgeLoss
from textgrad_core.ops import LLMCall
from textgrad_core.optimizers import TGD
from textgrad_core.credit import PER_PARAMETER, CreditResult, ParameterFeedback
from textgrad_core.runlog import JsonlLog
from textgrad_core.variable import Parameter, Variable
from tasks.bbh_object_counting import RUBRIC, ObjectCountingTask

TASK = ObjectCountingTask()
SPLITS = TASK.load_splits()
WORLD = TASK.sim_world(SPLITS)


def sim(**options):
    return build_engine({"provider": "sim", "model": "sim-1", "cache": {"enabled": False}, "options": options}, sim_world=WORLD)


def accuracy(engine, instruction):
    async def one(ex):
        out = await LLMCall(engine, instruction).acall(ex.input)
        return out.value.strip().endswith(f"Answer: {ex.target}")

    async def main():
        return await asyncio.gather(*(one(e) for e in SPLITS.val))
    return sum(asyncio.run(main())) / len(SPLITS.val)


def test_forward_accuracy_rises_with_rubric_items_and_is_deterministic():
    engine = sim()
    base = "Answer the question."
    full = base + " " + " ".join(i.guidance for i in RUBRIC)
    low, high = accuracy(engine, base), accuracy(engine, full)
    assert high - low > 0.3
    assert accuracy(sim(), base) == low  # same seed, same answers
    assert accuracy(sim(seed=7), base) != low or accuracy(sim(seed=7), full) != high


def test_judge_names_missing_guidance_when_wrong():
    engine = sim()
    ex = SPLITS.train[0]
    judge = JudgeLoss(engine.with_role("judge"), "Is the count right?")
    right = judge(Variable(f"Answer: {ex.target}", role="answer"), ex.input)
    wrong = judge(Variable("Answer: -5", role="answer"), ex.input)
    assert right.score == 1.0 and wrong.score == 0.0
    assert "did not follow this guidance" in wrong.value


def test_optimizer_adds_named_guidance_and_malformed_rate_is_logged(tmp_path):
    param = Parameter(value="Count things.", role="instruction", name="instruction")
    credit = CreditResult("backprop", PER_PARAMETER,
                          feedback={"instruction": [ParameterFeedback("e1", f"This instruction lacks guidance: {RUBRIC[1].hint}")]})
    asyncio.run(TGD().step([param], credit, sim(), step=1))
    assert param.value == "Count things. " + RUBRIC[1].guidance
    broken = Parameter(value="Count things.", role="instruction", name="instruction")
    log = JsonlLog(tmp_path / "events.jsonl")
    asyncio.run(TGD().step([broken], credit, sim(malformed_rate=1.0), step=1, events=log))
    assert broken.value == "Count things." and log.read()[0]["kind"] == "optimizer_reply_rejected"


def test_sim_reply_usage_and_simulated_flag():
    engine = sim()
    reply = engine.complete(LLMRequest.chat(SPLITS.val[0].input, system="Be careful.", tag="forward:x"))
    assert engine.simulated and reply.provider == "sim" and reply.usage.input_tokens > 0 and reply.cost_usd == 0.0
