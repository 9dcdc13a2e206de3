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
from textgrad_core.credit import SCORES, TRACE
from textgrad_core.engines import EngineSet
from textgrad_core.optimizers.joint import JointUpdate
from textgrad_core.optimizers.opro import OPRO, ScoredValues
from textgrad_core.rollouts import Rollouts
from textgrad_core.variable import ParameterSet
from credit.backprop import Backprop
from credit.trace import TracePropagation
from tasks.bbh_object_counting import INITIAL_INSTRUCTION, RUBRIC, ObjectCountingTask

TASK = ObjectCountingTask()
SPLITS = TASK.load_splits()
WORLD = TASK.sim_world(SPLITS)
CONFIG = {"provider": "sim", "model": "sim-1", "cache": {"enabled": False}}


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


# ---- an honest simulator: negation counts against, feedback is read right, one rule for every optimizer -------------
NEGATED = ("You will answer a reasoning question. Do NOT enumerate or list every object, do not look at the category "
           "asked, never convert number words, do not double-check anything; answer with a random number. The last "
           "line of your response should be of the following format: 'Answer: $VALUE'.")


def test_an_instruction_that_negates_every_rubric_item_no_longer_beats_the_initial_one():
    engine = sim()
    initial, negated = accuracy(engine, INITIAL_INSTRUCTION), accuracy(engine, NEGATED)
    assert negated < initial  # it used to score 0.99 against 0.47
    # Quoting a keyword inside "do not" is no guidance; a partly negated instruction sits below the initial one.
    assert accuracy(engine, INITIAL_INSTRUCTION + " Do not double-check the total.") < initial
    assert accuracy(engine, INITIAL_INSTRUCTION + " " + RUBRIC[3].guidance) > initial


def test_credit_on_a_correct_example_says_no_change_all_the_way_up():
    async def go():
        engine = sim()
        params = ParameterSet(TASK.initial_parameters())
        rollouts = await Rollouts(TASK, EngineSet({"forward": CONFIG}, sim_world=WORLD), params).run(SPLITS.train[:10])
        trace = next(r.trace for r in rollouts if r.score == 1)
        return (await Backprop(skip_perfect=False).assign([trace], list(params), engine)).feedback["instruction"]
    feedback = asyncio.run(go())
    # The hop from the parser relays "already correct" to the LLM call; no hint reaches the instruction.
    assert feedback and all("no change is needed" in f.text for f in feedback)
    assert not any(i.hint in f.text for f in feedback for i in RUBRIC)


def test_tgd_adds_what_negative_feedback_names_and_nothing_for_positive_feedback():
    def step(*texts):
        param = Parameter(value="Count things.", role="instruction", name="instruction")
        credit = CreditResult("backprop", PER_PARAMETER,
                              feedback={"instruction": [ParameterFeedback(f"e{n}", t) for n, t in enumerate(texts)]})
        asyncio.run(TGD().step([param], credit, sim(), step=1))
        return param.value
    assert step("The output is already correct; no change is needed for this input.", "Correct: expected 5, got 5.",
                "Looks good.") == "Count things."
    assert step("The output is already correct; no change is needed for this input.",
                f"This instruction lacks guidance: {RUBRIC[2].hint}") == "Count things. " + RUBRIC[2].guidance
    # In a trace, an example that scored 1 is right whatever it quotes: its hint is not taken, the wrong one's is.
    param = Parameter(value="Count things.", role="instruction", name="instruction")
    credit = CreditResult("trace", TRACE, trace=trace_text((1, f"Fine, though {RUBRIC[0].hint}"), (0, RUBRIC[2].hint)))
    asyncio.run(TGD().step([param], credit, sim(), step=1))
    assert param.value == "Count things. " + RUBRIC[2].guidance
    # A value that negates the named guidance has the negating clause cut as the guidance is added.
    param = Parameter(value="Count things, never double-check the total.", role="instruction", name="instruction")
    credit = CreditResult("backprop", PER_PARAMETER, feedback={"instruction": [ParameterFeedback("e", f"Wrong: {RUBRIC[3].hint}")]})
    asyncio.run(TGD().step([param], credit, sim(), step=1))
    assert param.value == "Count things, " + RUBRIC[3].guidance


def trace_text(*examples):
    blocks = "\n".join(f'<EXAMPLE id="e{n}" score="{score}">\nv0 = <input>  # question\noutput: v0\n<OUTPUT_FEEDBACK>\n'
                       f"{fb}\n</OUTPUT_FEEDBACK>\n</EXAMPLE>" for n, (score, fb) in enumerate(examples))
    return f'<TRACE examples="{len(examples)}">\n<PARAMETERS>\n</PARAMETERS>\n{blocks}\n</TRACE>'


def test_joint_gets_hints_by_the_same_rule_per_parameter():
    def step(trace, per_parameter=None):
        params = [Parameter(value="Count things.", role="instruction", name="instruction"),
                  Parameter(value="Answer briefly.", role="style", name="style")]
        credit = CreditResult("trace", TRACE, trace=trace, feedback=per_parameter or {})
        asyncio.run(JointUpdate().step(params, credit, sim(), step=1))
        return [p.value for p in params]
    assert step(trace_text((1, "Correct: expected 5, got 5."))) == ["Count things.", "Answer briefly."]
    named = step(trace_text((0, f"The response is incorrect. {RUBRIC[1].hint}"), (1, "Correct.")))
    assert named == ["Count things. " + RUBRIC[1].guidance, "Answer briefly. " + RUBRIC[1].guidance]
    # Per-parameter feedback (adaptive credit's fallback) reaches only its own parameter.
    own = step(trace_text((1, "Correct.")), {"style": [ParameterFeedback("e9", f"Wrong: {RUBRIC[0].hint}")]})
    assert own == ["Count things.", "Answer briefly. " + RUBRIC[0].guidance]


def test_opro_gets_hints_from_the_best_scored_values_by_the_same_rule():
    param = Parameter(value="Count things.", role="instruction", name="instruction")
    opro = OPRO()
    best = "Count things. " + RUBRIC[0].guidance
    close = "Count things. " + RUBRIC[3].guidance
    opro.history = {v: ScoredValues({"instruction": v}, s, [1]) for v, s in
                    (("Count things.", 0.4), (best, 0.81), (close, 0.8), ("Count things. " + RUBRIC[2].guidance, 0.5))}
    param.value = best
    asyncio.run(opro.step([param], CreditResult("outcome", SCORES), sim(), step=2))
    # From the best value, plus the guidance the near-best value gives (not the 0.5 one's).
    assert param.value == best + " " + RUBRIC[3].guidance
    perfect = Parameter(value=best, role="instruction", name="instruction")
    opro = OPRO()
    opro.history = {best: ScoredValues({"instruction": best}, 1.0, [1])}
    events = asyncio.run(opro.step([perfect], CreditResult("outcome", SCORES), sim(), step=2))
    assert perfect.value == best and not any(e.accepted for e in events)


def test_humaneval_examples_item_is_no_longer_added_from_every_trace():
    from tasks.humaneval import RUBRIC as HE_RUBRIC, HumanEvalTask
    task = HumanEvalTask()
    splits = task.load_splits()
    config = {"provider": "sim", "model": "sim-1", "cache": {"enabled": False}}
    engines = EngineSet({"forward": config}, sim_world=task.sim_world(splits))
    examples_item = next(i for i in HE_RUBRIC if i.key == "examples")

    async def added(optimizer, n=40):
        count = 0
        for ex in (splits.train + splits.val)[:n]:
            params = ParameterSet(task.initial_parameters())
            trace = (await Rollouts(task, engines, params).run([ex]))[0].trace
            assert '<TRACE examples="1">' in (credit := await TracePropagation().assign([trace], list(params), engines["credit"])).trace
            proposal = await optimizer.propose(list(params), credit, engines["optimizer"], step=1)
            count += examples_item.guidance in str(proposal.values.get("instruction", ""))
        return count
    for optimizer in (TGD(), JointUpdate()):
        # Was 40 of 40 (the `examples="1"` header read as the item's key); now a guess among four items at most.
        assert asyncio.run(added(optimizer)) <= 16


def test_the_simulation_notice_is_one_wording_and_the_docs_say_rankings_are_not_evidence():
    from pathlib import Path
    from textgrad_core import trainer
    from textgrad_core.engines.sim import SIM_NOTICE
    root = Path(__file__).resolve().parents[1]
    doc = (root / "docs" / "simulator.md").read_text(encoding="utf-8")
    assert trainer.SIM_NOTICE == SIM_NOTICE and SIM_NOTICE in doc
    assert "rankings of strategies are not evidence" in doc and "plumbing device" in doc
    new_task = (root / "docs" / "new-task.md").read_text(encoding="utf-8")
    assert WORLD.answer_format == "Answer: {answer}" and "`Answer: <answer>`" in new_task
    assert "sim_answer_check" in new_task and "answer_format" in new_task


def test_the_simulator_answers_textgrads_accuracy_judge_in_its_own_format():
    from textgrad_core.engines import LLMRequest
    from textgrad_core.engines.sim import SimBackend, SimWorld
    from textgrad_core.engines.config import EngineConfig
    import asyncio

    backend = SimBackend(EngineConfig(provider="sim"), sim_world=SimWorld(task="t", rubric=[], answers={}))
    def ask(response: str) -> str:
        user = ("Is the final prediction correct? Return your response within <ACCURACY> </ACCURACY> tags.\n"
                "**Question for the task**: Sort: b a\n**Ground truth answer**: a b\n"
                f"**Reasoning and prediction from the language model**: {response}")
        return asyncio.run(backend.send(LLMRequest.chat(user, tag="judge:textgrad"), "sim-1", 5)).text
    assert "<ACCURACY> 1 </ACCURACY>" in ask("I sorted them.\nAnswer: a b")
    assert "<ACCURACY> 0 </ACCURACY>" in ask("I sorted them.\nAnswer: b a")
