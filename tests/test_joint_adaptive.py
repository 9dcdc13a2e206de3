"""The joint optimizer sees both halves of an adaptive credit result: the trace and the fallback feedback."""
import asyncio
import json

from textgrad_core.credit import TRACE, CreditResult, ParameterFeedback
from textgrad_core.optimizers.joint import JointUpdate
from textgrad_core.variable import Parameter
from tests.scripted import scripted_engine


def test_joint_prompt_holds_trace_and_fallback_feedback():
    param = Parameter(value="v", role="instruction", name="p")
    credit = CreditResult("adaptive", TRACE, trace="TRACE-OF-SMALL-EXAMPLE",
                          feedback={"p": [ParameterFeedback("big-example", "FALLBACK-FEEDBACK")]})
    engine, backend = scripted_engine(replies=[json.dumps({"reasoning": "r", "updates": {"p": "v2"}})])
    asyncio.run(JointUpdate().step([param], credit, engine, step=1))
    prompt = backend.requests[0].user_text
    assert "TRACE-OF-SMALL-EXAMPLE" in prompt and "FALLBACK-FEEDBACK" in prompt and 'id="big-example"' in prompt
    assert param.value == "v2"
