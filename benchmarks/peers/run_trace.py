"""Workloads (a) and (b) written the way Trace's (trace-opt) tutorials write them; runs in Trace's own virtualenv.

LLM calls inside the system are `@bundle` functions calling `opto.utils.llm.LLM()` (LiteLLM by default), the
judge is plain Python outside the graph, a minibatch is joined by a bundled `batchify`, one OptoPrime step per step.
Usage: python run_trace.py --workload a --out result.json   (OPENAI_BASE_URL / OPENAI_API_KEY point at the server)
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent.parent))
from benchmarks.spec import JUDGE_INSTRUCTION, WORKLOADS, instruction, is_exact, question  # noqa: E402

os.environ.setdefault("TRACE_LITELLM_MODEL", "openai/mock-model")
from opto.optimizers import OptoPrime  # noqa: E402
from opto.trace import bundle, node  # noqa: E402
from opto.utils.llm import LLM  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--workload", choices=["a", "b"], required=True)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    spec = WORKLOADS[args.workload]
    llm = LLM()

    def chat(system: str, user: str) -> str:
        reply = llm(messages=[{"role": "system", "content": system}, {"role": "user", "content": user}])
        return reply.choices[0].message.content

    @bundle()
    def call_stage(stage_instruction, text):
        """Call the language model with the stage's instruction as system prompt and the text as user message."""
        return chat(stage_instruction, text)

    @bundle()
    def batchify(*items):
        """Concatenate the outputs of the minibatch's examples, each with its position."""
        return "\n".join(f"ID [{i}]: {item}" for i, item in enumerate(items))

    params = [node(instruction(s), trainable=True, description=f"instruction of the {s}") for s in spec.stages]
    optimizer = OptoPrime(params, llm=llm)
    t0 = time.time()
    for step in range(spec.steps):
        outputs, feedback = [], []
        for i in range(spec.batch):
            text, reference = question(step, i)
            out = node(text, trainable=False, description="question")
            for p in params:
                out = call_stage(p, out)
            if spec.judge:
                verdict = chat("You are a careful evaluator.",
                               f"{JUDGE_INSTRUCTION}\nQuestion: {text}\nReference answer: {reference}\nResponse: {out.data}")
            else:
                verdict = "Correct." if is_exact(out.data, reference) else f"Wrong: the expected answer is {reference}."
            outputs.append(out)
            feedback.append(f"ID [{i}]: {verdict}")
        target = batchify(*outputs)
        optimizer.zero_feedback()
        optimizer.backward(target, "\n".join(feedback))
        optimizer.step()
    result = {"peer": "trace", "workload": spec.key, "t_run_start": t0, "t_run_end": time.time(),
              "final_values": {f"p{i}": p.data for i, p in enumerate(params)},
              "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
    Path(args.out).write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
