"""Textual gradient descent: full value and constraints in the prompt, re-ask on a malformed reply, history kept."""
import asyncio

from textgrad_core.credit import PER_PARAMETER, CreditResult, ParameterFeedback
from textgrad_core.optimizers import TGD
from textgrad_core.runlog import JsonlLog
from textgrad_core.variable import Parameter
from tests.scripted import scripted_engine

LONG = "Rule {}: count carefully. " * 200


def credit_for(param, *texts):
    return CreditResult("backprop", PER_PARAMETER, feedback={param.id: [ParameterFeedback(f"ex{i}", t) for i, t in enumerate(texts)]})


def test_prompt_holds_full_value_constraints_and_grouped_feedback():
    param = Parameter(value=LONG, role="instruction of the solver", name="solver.instruction",
                      constraints=["Keep the 'Answer:' line.", "At most 300 words."])
    engine, backend = scripted_engine(replies=["<NEW_VALUE>\nShorter and better.\n</NEW_VALUE>"])
    events = asyncio.run(TGD().step([param], credit_for(param, "too vague", "missed a unit"), engine, step=1))
    prompt = backend.requests[0].user_text
    assert LONG in prompt  # the full value, not a truncation
    assert "- Keep the 'Answer:' line." in prompt and "- At most 300 words." in prompt
    assert '<EXAMPLE id="ex0">\ntoo vague\n</EXAMPLE>' in prompt and '<EXAMPLE id="ex1">\nmissed a unit\n</EXAMPLE>' in prompt
    assert param.value == "Shorter and better." and param.version == 1
    assert [h.value for h in param.history] == [LONG, "Shorter and better."]
    assert events[0].accepted and events[0].new_version == 1


def test_malformed_reply_is_reasked_once_then_old_value_kept_and_logged(tmp_path):
    param = Parameter(value="old value", role="instruction", name="p")
    engine, backend = scripted_engine(replies=["I would make it better.", "Still no delimiters."])
    log = JsonlLog(tmp_path / "events.jsonl")
    events = asyncio.run(TGD().step([param], credit_for(param, "fix it"), engine, step=3, events=log))
    assert len(backend.requests) == 2
    reask = backend.requests[1]
    assert reask.messages[-2].content == "I would make it better."  # the bad reply is quoted back
    assert "could not be used: the reply has no <NEW_VALUE> delimiter" in reask.messages[-1].content
    assert param.value == "old value" and param.version == 0 and len(param.history) == 1
    assert not events[0].accepted and "malformed" in events[0].reason
    (record,) = log.read()
    assert record["kind"] == "optimizer_reply_rejected" and record["param"] == "p" and record["step"] == 3
    assert "no <NEW_VALUE> delimiter" in record["reason"]


def test_reask_that_succeeds_is_applied():
    param = Parameter(value="old", role="instruction", name="p")
    engine, backend = scripted_engine(replies=["oops", "<NEW_VALUE>new</NEW_VALUE>"])
    asyncio.run(TGD().step([param], credit_for(param, "fix"), engine, step=1))
    assert param.value == "new" and "after re-ask" in param.history[-1].reason


def test_memory_renders_past_values_and_their_feedback():
    param = Parameter(value="v0", role="instruction", name="p")
    engine, backend = scripted_engine(replies=["<NEW_VALUE>v1</NEW_VALUE>", "<NEW_VALUE>v2</NEW_VALUE>"])
    tgd = TGD(memory=2)
    asyncio.run(tgd.step([param], credit_for(param, "feedback one"), engine, step=1))
    asyncio.run(tgd.step([param], credit_for(param, "feedback two"), engine, step=2))
    assert "<PAST_UPDATES>" not in backend.requests[0].user_text
    second = backend.requests[1].user_text
    assert '<PAST_VALUE n="1">\nv0\n</PAST_VALUE>' in second and "feedback one" in second.split("<PAST_UPDATES>")[1]


def test_parameters_are_updated_concurrently():
    params = [Parameter(value=f"v{i}", role="instruction", name=f"p{i}") for i in range(4)]
    engine, backend = scripted_engine(reply_fn=lambda r: "<NEW_VALUE>x</NEW_VALUE>", delay=0.05)
    credit = CreditResult("backprop", PER_PARAMETER, feedback={p.id: [ParameterFeedback("e", "fb")] for p in params})
    asyncio.run(TGD().step(params, credit, engine, step=1))
    assert backend.peak_in_flight == 4 and all(p.value == "x" for p in params)


def test_a_reply_that_only_drops_the_trailing_newline_is_not_a_new_version():
    """The delimiters drop a code value's trailing newline; battleship's policies once got a version per step for it."""
    from textgrad_core.optimizers.base import Proposal, apply_proposal

    code = "def act(plan):\n    return [0, 0]\n"
    param = Parameter(value=code, role="the policy's act function", name="act", kind="code")
    engine, _ = scripted_engine(replies=[f"<NEW_VALUE>\n{code}</NEW_VALUE>"])
    (event,) = asyncio.run(TGD().step([param], credit_for(param, "aim better"), engine, step=1))
    assert not event.accepted and param.version == 0 and param.value == code
    # A proposal built elsewhere (a merge, a plug-in) is held to the same rule when it is applied.
    (applied,) = apply_proposal([param], Proposal(values={param.id: code.rstrip("\n")}), step=2)
    assert not applied.accepted and param.version == 0 and "equals the current value" in applied.reason
    (changed,) = apply_proposal([param], Proposal(values={param.id: code.replace("0, 0", "1, 1")}), step=3)
    assert changed.accepted and param.version == 1
