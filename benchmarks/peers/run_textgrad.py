"""Workloads (a) and (b) written the way TextGrad's tutorials write them; runs in TextGrad's own virtualenv.

Usage: python run_textgrad.py --workload a --out result.json   (OPENAI_BASE_URL / OPENAI_API_KEY point at the server)
"""
from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent.parent))
from benchmarks.spec import JUDGE_INSTRUCTION, WORKLOADS, instruction, is_exact, question  # noqa: E402

import textgrad as tg  # noqa: E402
from textgrad.autograd.string_based_ops import StringBasedFunction  # noqa: E402
from textgrad.loss import MultiFieldEvaluation  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--workload", choices=["a", "b"], required=True)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    spec = WORKLOADS[args.workload]
    engine = tg.get_engine("gpt-4o")  # any name: the server ignores it; OPENAI_BASE_URL routes the SDK
    tg.set_backward_engine(engine, override=True)
    params = [tg.Variable(instruction(s), requires_grad=True, role_description=f"instruction of the {s}")
              for s in spec.stages]
    models = [tg.BlackboxLLM(engine, system_prompt=p) for p in params]
    optimizer = tg.TGD(parameters=params, engine=engine)
    if spec.judge:
        judge = MultiFieldEvaluation(tg.Variable(JUDGE_INSTRUCTION, requires_grad=False,
                                                 role_description="evaluation instruction"),
                                     role_descriptions=["question", "reference answer", "response"], engine=engine)

    def exact(prediction, reference):
        return "Correct." if is_exact(prediction.value, reference.value) else f"Wrong: the expected answer is {reference.value}."

    metric = StringBasedFunction(exact, function_purpose="exact match with the reference answer")
    t0 = time.time()
    for step in range(spec.steps):
        optimizer.zero_grad()
        losses = []
        for i in range(spec.batch):
            text, reference = question(step, i)
            x = tg.Variable(text, requires_grad=False, role_description="question")
            ref = tg.Variable(reference, requires_grad=False, role_description="reference answer")
            out = x
            for model in models:
                out = model(out)
            if spec.judge:
                losses.append(judge([x, ref, out]))
            else:
                losses.append(metric(inputs=dict(prediction=out, reference=ref),
                                     response_role_description="evaluation of the answer"))
        total = tg.sum(losses)
        total.backward()
        optimizer.step()
    result = {"peer": "textgrad", "version": tg.__version__, "workload": spec.key, "t_run_start": t0,
              "t_run_end": time.time(), "final_values": {f"p{i}": p.value for i, p in enumerate(params)},
              "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
    Path(args.out).write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
