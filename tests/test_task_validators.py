"""The shipped tasks declare the validators their constraints imply (issue 13, item 3): every starting value passes
them under every protocol, a value breaking one is rejected with its reason, the simulator's own proposals pass
them (so sim runs still improve), and in a run an invalid proposal is re-asked, then kept with an event."""
from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir

from experiments.run import run_experiment
from runs_cli import records, run_cli
from tasks.registry import load_task
from textgrad_core import prompts
from textgrad_core.errors import ConfigError
from textgrad_core.optimizers.kinds import coerce_value
from textgrad_core.validators import ValueRejected, default_validators

CONFIGS = str(Path(__file__).resolve().parents[1] / "configs")
# Every shipped task but battleship and humaneval_sf (their owner declares theirs), with the option sets whose
# parameters differ; each is tried under every protocol it accepts.
TASKS = {
    "bbh": {}, "bbh_object_counting": {}, "bbh_word_sorting": {}, "gsm8k": {}, "gsm8k+calculator": {"use_calculator": True},
    "gsm8k_sc": {}, "gsm8k_agent": {}, "gsm8k_mc": {"n_train": 10, "n_val": 5}, "cascade": {}, "math_sympy": {},
    "hotpotqa_rag": {}, "hotpotqa_multihop": {}, "hotpotqa_multihop+1hop": {"hops": 1}, "humaneval": {},
    "humaneval+instance": {"mode": "instance", "problem": "HumanEval/0"}, "layered": {},
    "layered+bbh": {"base": "bbh_object_counting"}, "tool_use": {},
}
PROTOCOL_NAMES = ("strict", "textgrad", "trace", "gepa")


def build(key: str, protocol: str | None = None):
    options = dict(TASKS[key], **({"protocol": protocol} if protocol else {}))
    return load_task({"name": key.split("+")[0], **options})


def task_protocols() -> list[tuple[str, str]]:
    """(task key, protocol) for every protocol each task accepts (an unknown one is a ConfigError at construction)."""
    pairs = []
    for key in TASKS:
        for protocol in PROTOCOL_NAMES:
            try:
                build(key, protocol)
            except ConfigError:
                continue
            pairs.append((key, protocol))
        if not any(k == key for k, _ in pairs):  # a task without a protocol option: its one (strict) scorer
            build(key)
            pairs.append((key, None))
    return pairs


PAIRS = task_protocols()


def declared(param) -> list:
    """The validators a task declared, after the kind's defaults."""
    return param.validators[len(default_validators(param.kind, param.choices, param.allowed_ids)):]


# ---- every starting value passes, under every protocol ------------------------------------------------------
def test_every_task_accepts_each_protocol_it_reproduces():
    protocols = {}
    for key, protocol in PAIRS:
        protocols.setdefault(key, []).append(protocol)
    assert protocols["bbh"] == ["strict", "trace"] and protocols["hotpotqa_rag"] == ["strict", "gepa"]
    assert protocols["gsm8k"] == ["strict", "textgrad"] and protocols["bbh_word_sorting"] == ["strict", "textgrad"]
    assert protocols["math_sympy"] == [None]
    assert all("strict" in p or p == [None] for p in protocols.values()) and len(protocols) == len(TASKS)


@pytest.mark.parametrize("key,protocol", PAIRS)
def test_initial_values_pass_every_validator(key, protocol):
    params = build(key, protocol).initial_parameters()  # a Parameter whose initial value fails raises ConfigError
    assert params
    for p in params:
        assert p.rejection(p.value) is None, (p.name, p.rejection(p.value))
        for v in p.validators:
            assert v.check(p.value, p) is None, (p.name, v)
            assert v.describe(p), (p.name, v)  # the optimizer's prompt states what each one requires


def test_every_humaneval_problem_starts_from_a_program_that_defines_its_entry_point():
    task = build("humaneval+instance")
    for pid, problem in task.problems.items():
        task.problem = pid
        (program,) = task.initial_parameters()
        assert [v.name for v in declared(program)] == ["defines_function"], pid
        assert program.rejection(program.value) is None, pid
        renamed = re.sub(rf"\bdef {re.escape(problem['entry_point'])}\b", "def renamed_entry", program.value)
        assert f"does not define a top-level function '{problem['entry_point']}'" in str(program.rejection(renamed))


def test_protocols_without_constraints_declare_nothing_beyond_the_defaults():
    # TextGrad's published prompts have no textual constraint and its check reads the whole response.
    for key in ("bbh_object_counting", "bbh_word_sorting", "gsm8k"):
        (instruction,) = build(key, "textgrad").initial_parameters()
        assert not instruction.constraints and declared(instruction) == []
    # Nodes without a constraint of their own get only the default length bound.
    assert [p.name for p in build("layered").initial_parameters() if declared(p)] == ["solver.instruction"]


# ---- a value breaking a declared validator is rejected with its reason ---------------------------------------
def without(pattern: str, replacement: str = ""):
    return lambda value: re.sub(pattern, replacement, value)


NO_ANSWER = without(r"(?i)answer\s*:", "Result -")
# (task key, protocol) -> parameter -> [(how to break the starting value, the validator, part of the reason)]
BREAKS = {
    ("bbh", "strict"): {
        "prompt_template": [(without(r"\{question\}"), "pattern", "the slot {question} exactly once"),
                            (lambda v: v + "\n{question}", "pattern", "the slot {question} exactly once"),
                            (NO_ANSWER, "pattern", "the final line 'Answer: ...'")],
        "extract_answer": [(without(r"def extract_answer", "def extract"), "defines_function",
                            "does not define a top-level function 'extract_answer'")]},
    ("bbh", "trace"): {
        "prompt_template": [(without(r"\{question\}"), "pattern", "the slot {question} exactly once")],
        "extract_answer": [(lambda v: "extract_answer = len\n", "defines_function", "top-level function 'extract_answer'")]},
    ("bbh_object_counting", "strict"): {"instruction": [(NO_ANSWER, "pattern", "'Answer: $VALUE'")]},
    ("bbh_word_sorting", "strict"): {"instruction": [(NO_ANSWER, "pattern", "'Answer: $VALUE'")]},
    ("gsm8k", "strict"): {"instruction": [(NO_ANSWER, "pattern", "the answer parser reads the text after")]},
    ("gsm8k+calculator", "strict"): {
        "instruction": [(NO_ANSWER, "pattern", "'Answer: $VALUE'")],
        "calculator.description": [(without(r"CALC\(", "calc("), "pattern", "keep 'CALC(' as written")]},
    ("gsm8k_sc", "strict"): {
        "cot.instruction": [(NO_ANSWER, "pattern", "'Answer: $VALUE'")],
        "cot.k": [(lambda v: 0, "number_range", "below the minimum 1"), (lambda v: 33, "number_range", "above the maximum 32"),
                  (lambda v: 2.5, "number_range", "an integer is required")],
        "cot.threshold": [(lambda v: 1.5, "number_range", "above the maximum 1"),
                          (lambda v: -0.1, "number_range", "below the minimum 0")]},
    ("gsm8k_agent", "strict"): {
        "agent.instruction": [(without(r"Action:", "Act"), "pattern", "a line 'Action: ...'"),
                              (NO_ANSWER, "pattern", "'Answer: <number>'")],
        "agent.tool.calculator": [(without(r"calculator\[", "calculator ("), "pattern", "'calculator['")]},
    ("gsm8k_mc", "strict"): {"medprompt.instruction": [(NO_ANSWER, "pattern", "'Answer: <letter>'")],
                             "medprompt.ensemble": [(lambda v: 10, "number_range", "above the maximum 9")]},
    ("cascade", "strict"): {
        "cascade.instruction": [(NO_ANSWER, "pattern", "'Answer: $VALUE'")],
        "cascade.threshold": [(lambda v: 2, "number_range", "above the maximum 1")]},
    ("math_sympy", "strict"): {
        "solver.instruction": [(NO_ANSWER, "pattern", "the symbolic checker reads the value")],
        "solver.retries": [(lambda v: 6, "number_range", "above the maximum 5"), (lambda v: 1.5, "number_range", "integer")]},
    ("hotpotqa_rag", "strict"): {
        "query.instruction": [(without(r"Query:", "Search"), "pattern", "'Query: ...' (the retriever reads it)")],
        "followup_query.instruction": [(without(r"Query:", "Search"), "pattern", "'Query: ...'")],
        "answer.instruction": [(NO_ANSWER, "pattern", "'Answer: <answer>'")],
        "answer.demos": [(NO_ANSWER, "pattern", "keep their lines 'Answer: <answer>'")]},
    ("hotpotqa_rag", "gepa"): {
        "query.instruction": [(without(r"Query:"), "pattern", "'Query: ...'")],
        "followup_query.instruction": [(without(r"Query:"), "pattern", "'Query: ...'")],
        "answer.instruction": [(without(r"\[\[ ## answer ## \]\]", "answer"), "pattern", "'[[ ## answer ## ]]'")],
        "answer.demos": [(NO_ANSWER, "pattern", "'Answer: <answer>'")]},
    ("hotpotqa_multihop", "strict"): {
        "rag.query.instruction": [(without(r"Query:"), "pattern", "'Query: ...'")],
        "rag.followup.instruction": [(without(r"Query:"), "pattern", "'Query: ...'")],
        "rag.reader.instruction": [(NO_ANSWER, "pattern", "'Answer: <answer>'")],
        "rag.top_k": [(lambda v: 11, "number_range", "above the maximum 10"), (lambda v: 0, "number_range", "below")]},
    ("hotpotqa_multihop+1hop", "strict"): {
        "rag.query.instruction": [(without(r"Query:"), "pattern", "'Query: ...'")],
        "rag.reader.instruction": [(NO_ANSWER, "pattern", "'Answer: <answer>'")],
        "rag.top_k": [(lambda v: 12, "number_range", "above the maximum 10")]},
    ("humaneval", "strict"): {
        "instruction": [(without(r"```python code block", "reply"), "pattern", "'```' or 'code block'")]},
    ("humaneval+instance", "strict"): {
        "program": [(without(r"def has_close_elements", "def close"), "defines_function", "'has_close_elements'")]},
    ("layered", "strict"): {"solver.instruction": [(NO_ANSWER, "pattern", "'Answer: $VALUE'")]},
    ("layered+bbh", "strict"): {"solver.instruction": [(NO_ANSWER, "pattern", "'Answer: $VALUE'")]},
    ("tool_use", "strict"): {
        "instruction": [(without(r"(?i)json", "a"), "pattern", "'JSON'"),
                        (without(r"\btool\b", "name"), "pattern", "'tool', 'args'"),
                        (without(r'"args"', "inputs"), "pattern", "'tool', 'args'")],
        **{f"tool.{tool}": [(without(rf"\b{word}\b", "x"), "pattern", "the names the agent's calls must use")
                            for word in [tool, *args]]
           for tool, args in {"convert_units": ["value", "from_unit", "to_unit"], "add_days": ["date", "days"],
                              "days_between": ["start", "end"], "lookup": ["table", "key"],
                              "calculate": ["expression"]}.items()}},
}


# Declared by its module (textgrad_core/modules/medprompt.py, tested there): at most 64 demos, which the default
# check (distinct training ids, 10 here) makes unreachable on its own.
MODULE_OWN = {"medprompt.demos"}


@pytest.mark.parametrize("key,protocol", PAIRS)
def test_a_value_breaking_each_declared_validator_is_rejected_with_its_reason(key, protocol):
    params = {p.name: p for p in build(key, protocol).initial_parameters()}
    breaks = BREAKS.get((key, protocol or "strict"), {})
    assert set(breaks) == {name for name, p in params.items() if declared(p)} - MODULE_OWN  # every declaration
    for name, cases in breaks.items():
        p = params[name]
        hit = set()
        for breaker, validator, reason in cases:
            bad = breaker(p.value)
            assert bad != p.value, (name, reason)
            failure = p.rejection(bad)
            assert failure is not None and failure.validator == validator, (name, reason, failure)
            assert reason in failure.reason and str(failure).startswith(f"rejected by validator '{validator}': ")
            # Only declared validators reject it (the kind's defaults accept it): the case tests the declaration.
            hit |= {i for i, v in enumerate(declared(p)) if v.check(bad, p)}
            assert all(v.check(bad, p) is None for v in p.validators[:len(p.validators) - len(declared(p))])
        assert hit == set(range(len(declared(p)))), (name, "a declared validator no case breaks")


def test_the_optimizer_path_rejects_a_broken_value_and_states_the_requirement():
    template, code = build("bbh").initial_parameters()
    with pytest.raises(ValueRejected, match=r"exactly once") as caught:
        coerce_value(template, template.value.replace("{question}", "the question"))
    assert caught.value.validator == "pattern"
    with pytest.raises(ValueRejected, match="top-level function 'extract_answer'"):
        coerce_value(code, "def extract(response):\n    return response\n")
    k = {p.name: p for p in build("gsm8k_sc").initial_parameters()}["cot.k"]
    assert coerce_value(k, "7") == 7
    with pytest.raises(ValueRejected, match="above the maximum 32"):
        coerce_value(k, "1000")
    from textgrad_core.optimizers.kinds import contract
    assert "the slot {question} exactly once" in contract(template)
    assert "defines a top-level function 'extract_answer'" in contract(code)


def test_a_user_initial_value_that_breaks_a_declared_validator_is_one_clear_error():
    with pytest.raises(ConfigError, match=r"Parameter 'program': its initial value is rejected by validator "
                                          r"'defines_function'.*'has_close_elements'"):
        load_task({"name": "humaneval", "mode": "instance", "problem": 0, "initial_code": "x = 1\n"}).initial_parameters()
    with pytest.raises(ConfigError, match=r"'cot.k': its initial value is rejected by validator 'number_range': 40 is "
                                          r"above the maximum 32"):
        load_task({"name": "gsm8k_sc", "k": 40}).initial_parameters()


def test_declared_validators_are_saved_with_the_parameter_and_rebuilt():
    from textgrad_core.graph import _parameter_fields
    for key in ("bbh", "tool_use", "gsm8k_sc"):
        for p in build(key).initial_parameters():
            fields = _parameter_fields(p, history=False)
            assert fields["unsaved_validators"] == [] and len(fields["validators"]) == len(declared(p)), p.name


# ---- the simulator's proposals pass them, so simulated runs still improve -------------------------------------
def _run(tmp_path: Path, *overrides: str) -> tuple[dict, Path]:
    run = tmp_path / "run"
    shutil.rmtree(run, ignore_errors=True)
    with initialize_config_dir(config_dir=CONFIGS, version_base="1.3"):
        cfg = compose(config_name="config", overrides=["engine=sim", "trainer.max_steps=3", "trainer.batch_size=3",
                                                       "trainer.val_size=6", "trainer.test_size=2",
                                                       "trainer.progress=false", f"run_dir={run}", *overrides])
    return run_experiment(cfg), run


@pytest.mark.parametrize("task,optimizer,credit", [
    ("bbh", "tgd", "backprop"), ("bbh", "joint", "trace"), ("gsm8k", "opro", "outcome"), ("tool_use", "tgd", "backprop"),
    ("gsm8k_sc", "tgd", "backprop"), ("math_sympy", "tgd", "backprop"), ("hotpotqa_rag", "opro", "outcome")])
def test_simulated_runs_improve_with_no_proposal_rejected(tmp_path, monkeypatch, task, optimizer, credit):
    monkeypatch.chdir(tmp_path)
    summary, run = _run(tmp_path, f"task={task}", f"optimizer={optimizer}", f"credit={credit}")
    assert summary["status"] == "completed", summary["stop_reason"]
    events = records(run / "events.jsonl") if (run / "events.jsonl").exists() else []  # written at the first event
    assert [e for e in events if e["kind"] == "optimizer_reply_rejected"] == []
    assert summary["val"]["final"] > summary["val"]["initial"]
    assert any(r["version"] > 0 for r in records(run / "parameters.jsonl"))


# ---- end to end: an invalid proposal is re-asked, then the value is kept with an event ---------------------------
def _invalid_proposals(body: dict) -> str:
    """The optimizer's reply for the local server: a template without its slot, code without extract_answer."""
    asked = json.dumps(body["messages"])
    if "def extract_answer" in asked:
        return f"{prompts.NEW_VALUE_OPEN}\ndef extract(response):\n    return response\n{prompts.NEW_VALUE_CLOSE}"
    return f"{prompts.NEW_VALUE_OPEN}\nAnswer the question step by step. Answer: ...\n{prompts.NEW_VALUE_CLOSE}"


def test_a_sim_run_whose_optimizer_proposes_invalid_values_reasks_then_keeps_them(server, tmp_path):
    server.reply_fn = _invalid_proposals
    done = run_cli(tmp_path, "engine=sim", "task=bbh", "task.n_train=3", "task.n_val=2", "optimizer=tgd",
                   "engines.optimizer.provider=openai", f"engines.optimizer.base_url={server.openai_base_url}",
                   "engines.optimizer.model=local-test", "trainer.max_steps=1", "trainer.batch_size=2",
                   "trainer.test_size=2", "trainer.progress=false", "run_dir=run")
    assert done.returncode == 0, done.stderr[-2000:]
    run = tmp_path / "run"
    assert json.loads((run / "summary.json").read_text())["status"] == "completed"
    events = {e["param"]: e for e in records(run / "events.jsonl") if e["kind"] == "optimizer_reply_rejected"}
    assert set(events) == {"prompt_template", "extract_answer"}
    assert events["prompt_template"]["validator"] == "pattern" and events["prompt_template"]["kept_version"] == 0
    assert "the slot {question} exactly once" in events["prompt_template"]["reason"]
    assert events["extract_answer"]["validator"] == "defines_function"
    assert "top-level function 'extract_answer'" in events["extract_answer"]["reason"]
    # Each parameter was asked, then re-asked with the validator's reason; the answers went to the server only.
    optimizer_calls = [c for c in records(run / "calls.jsonl") if c["phase"] == "optimizer"]
    assert len(optimizer_calls) == 4 == len(server.answered())
    reasks = [c["messages"][-1]["content"] for c in optimizer_calls if len(c["messages"]) > 2]
    assert len(reasks) == 2
    assert any("rejected by validator 'pattern'" in r for r in reasks)
    assert any("rejected by validator 'defines_function'" in r for r in reasks)
    versions = records(run / "parameters.jsonl")
    assert versions and all(r["version"] == 0 for r in versions)  # nothing the validators refused was applied
