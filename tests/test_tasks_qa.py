"""The QA tasks: gsm8k (with its calculator), layered, hotpotqa_rag — data and splits, metrics, systems, Hydra runs."""
import asyncio
import json
import random
import sys
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir

from experiments.run import run_experiment
from tasks.bbh_data import load_bbh
from tasks.bbh_object_counting import ObjectCountingTask
from tasks.gsm8k import GSM8KTask, calculator, calc_requests, gsm8k_metric, load_gsm8k, safe_eval
from tasks.hotpotqa_rag import HotpotQARAGTask, exact_match, hotpotqa_metric, retrieve, token_f1
from tasks.layered import HOMES, LayeredTask
from tasks.registry import load_task
from textgrad_core.engines import build_engine
from textgrad_core.errors import ConfigError
from textgrad_core.graph import Graph
from textgrad_core.task import Example
from textgrad_core.variable import ParameterSet, Tape, Variable
from tests.scripted import scripted_engine

ROOT = Path(__file__).resolve().parents[1]
GSM8K_DIR = ROOT / "tasks" / "data" / "gsm8k"
HOTPOT_FILE = ROOT / "tasks" / "data" / "hotpotqa" / "dev_distractor_first53.json"


def run_forward(task, example, engine):
    """One forward pass on a tape; returns (output, graph of everything recorded)."""
    params = ParameterSet(task.initial_parameters())

    async def go():
        with Tape(example.id) as tape:
            out = await task.forward(example, params, {"forward": engine})
        return out, Graph(tape.variables + [out])

    out, graph = asyncio.run(go())
    return out, graph, params


# ---- gsm8k: data and splits ------------------------------------------------------------------------

@pytest.fixture(scope="module")
def gsm8k_splits():
    return GSM8KTask().load_splits()


def test_gsm8k_split_is_the_seeded_shuffle_of_the_train_file(gsm8k_splits):
    assert gsm8k_splits.sizes() == {"train": 200, "val": 300, "test": 1319}
    lines = [json.loads(l) for l in (GSM8K_DIR / "train.jsonl").read_text().splitlines()]
    order = list(range(len(lines)))
    random.Random(0).shuffle(order)
    assert [e.id for e in gsm8k_splits.train] == [f"gsm8k-train-{i}" for i in order[:200]]
    assert [e.id for e in gsm8k_splits.val] == [f"gsm8k-train-{i}" for i in order[200:500]]
    assert gsm8k_splits.train[0].input == lines[order[0]]["question"]
    test_order = list(range(1319))
    random.Random(0).shuffle(test_order)
    assert [e.id for e in gsm8k_splits.test] == [f"gsm8k-test-{i}" for i in test_order]


def test_gsm8k_target_is_the_number_after_hashes_without_commas(gsm8k_splits):
    by_id = {e.id: e for e in gsm8k_splits.train + gsm8k_splits.val + gsm8k_splits.test}
    lines = [json.loads(l) for l in (GSM8K_DIR / "train.jsonl").read_text().splitlines()]
    with_comma = next(i for i, r in enumerate(lines) if "," in r["answer"].split("#### ")[-1])
    every = {e.id: e for e in load_gsm8k()["train"]}
    assert every[f"gsm8k-train-{with_comma}"].target == lines[with_comma]["answer"].split("#### ")[-1].replace(",", "")
    assert every["gsm8k-train-0"].target == "72"  # Natalia's clips
    assert all(e.target.lstrip("-").isdigit() for e in by_id.values())


def test_gsm8k_size_options_cut_the_splits():
    splits = GSM8KTask(n_train=10, n_val=20, test_size=30).load_splits()
    full = GSM8KTask().load_splits()
    assert splits.sizes() == {"train": 10, "val": 20, "test": 30}
    assert [e.id for e in splits.train] == [e.id for e in full.train[:10]]
    assert [e.id for e in splits.val] == [e.id for e in full.train[10:30]]
    assert [e.id for e in splits.test] == [e.id for e in full.test[:30]]


def test_gsm8k_hf_loader_gives_the_same_examples(gsm8k_splits, tmp_path):
    pytest.importorskip("datasets")
    assert GSM8KTask(loader="hf", hf_cache_dir=str(tmp_path)).load_splits() == gsm8k_splits


def test_gsm8k_hf_loader_without_datasets_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "datasets", None)  # makes `import datasets` fail
    with pytest.raises(ConfigError, match="pip install datasets"):
        GSM8KTask(loader="hf").load_splits()


def test_gsm8k_data_errors_name_the_fix(tmp_path):
    with pytest.raises(ConfigError, match="data_dir"):
        GSM8KTask(data_dir=str(tmp_path)).load_splits()
    (tmp_path / "train.jsonl").write_text(json.dumps({"question": "q", "answer": "no hashes"}) + "\n")
    (tmp_path / "test.jsonl").write_text("")
    with pytest.raises(ConfigError, match="not a GSM8K file"):
        GSM8KTask(data_dir=str(tmp_path), n_train=1, n_val=1).load_splits()
    with pytest.raises(ConfigError, match="loader"):
        load_task({"name": "gsm8k", "loader": "csv"})


# ---- gsm8k: metric and calculator --------------------------------------------------------------------

EX72 = Example(id="x", input="How many clips?", target="72")


@pytest.mark.parametrize("response,score,feedback", [
    ("48 + 24 = 72\nAnswer: 72", 1.0, "Correct: expected 72, got 72."),
    ("Answer: $72.00", 1.0, "Correct: expected 72, got 72."),
    ("She sold 48 + 22 = 70.\nAnswer: 70", 0.0, "Wrong: expected 72, got 70."),
    # strict reads the FIRST number after 'Answer:' (a trailing remark never changes the answer)
    ("answer: 1,000 then 70", 0.0, "Wrong: expected 72, got 1000."),
])
def test_gsm8k_metric(response, score, feedback):
    result = gsm8k_metric(response, EX72)
    assert (result.score, result.feedback) == (score, feedback)


def test_gsm8k_metric_names_a_missing_answer_line():
    no_line = gsm8k_metric("So she sold 72 clips.", EX72)
    assert no_line.score == 1.0 and "no 'Answer: <number>' line" in no_line.feedback
    nothing = gsm8k_metric("I do not know.", EX72)
    assert nothing.score == 0.0 and nothing.feedback.startswith("Wrong: expected 72") and "'Answer: <number>' is missing" in nothing.feedback
    big = gsm8k_metric("Answer: 1,234", Example(id="y", input="q", target="1234"))
    assert big.score == 1.0


def test_safe_eval_does_arithmetic_and_nothing_else():
    assert safe_eval("(48 + 24) * 2 - 10 / 4") == 141.5
    assert safe_eval("2 ** 10 % 7") == 2 and safe_eval("-3 // 2") == -2 and safe_eval("1,000 × 3") == 3000
    for bad in ["__import__('os').system('echo hi')", "x + 1", "(1).real", "[1, 2]", "True + 1", "2 ** 1000", "9" * 300]:
        with pytest.raises(ValueError):
            safe_eval(bad)


def test_calculator_is_traced_and_reports_errors_per_line():
    requests = calc_requests(Variable("First CALC(48/2) then CALC((40 + 8) * 2)\nCALC(48 + 24\nCALC(1/0)", role="draft"))
    assert requests.value == "48/2\n(40 + 8) * 2\n48 + 24\n1/0"
    out = calculator(requests)
    assert out.value == "48/2 = 24\n(40 + 8) * 2 = 96\n48 + 24 = 72\n1/0 = error: division by zero"
    assert out.op.name == "calculator" and "safe_eval" in out.op.source and "never eval" in out.op.description
    assert out.inputs == [requests]


def test_gsm8k_calculator_system_feeds_results_back_in_a_second_call():
    task = GSM8KTask(use_calculator=True)

    def reply(request):
        if "Calculator results" in request.user_text:
            return "Using the results, 72.\nAnswer: 72"
        return "CALC(48/2)\nCALC(48 + 24)"

    engine, backend = scripted_engine(reply_fn=reply)
    out, graph, params = run_forward(task, EX72, engine)
    assert out.value.endswith("Answer: 72") and gsm8k_metric(out.value, EX72).score == 1.0
    first, second = backend.requests
    assert params["calculator.description"].value in first.user_text
    assert "48/2 = 24\n48 + 24 = 72" in second.user_text
    sub = graph.minimal_subgraph(out)
    assert {p.id for p in sub.parameters()} == {"instruction", "calculator.description"}
    assert "calculator" in {v.op.name for v in sub.variables if v.op}


def test_gsm8k_without_tool_use_is_one_call():
    engine, backend = scripted_engine(reply_fn=lambda r: "Answer: 72")
    out, _, _ = run_forward(GSM8KTask(use_calculator=True), EX72, engine)
    assert len(backend.requests) == 1 and out.value == "Answer: 72"
    engine, backend = scripted_engine(reply_fn=lambda r: "Answer: 72")
    out, _, params = run_forward(GSM8KTask(), EX72, engine)
    assert len(params) == 1 and backend.requests[0].messages[0].content == params["instruction"].value


# ---- layered ---------------------------------------------------------------------------------------

def test_layered_reuses_the_base_splits():
    assert LayeredTask().load_splits() == GSM8KTask().load_splits()
    bbh = LayeredTask(base="bbh_object_counting").load_splits()
    assert bbh == ObjectCountingTask().load_splits() and bbh.sizes() == {"train": 50, "val": 100, "test": 100}
    assert LayeredTask(base="bbh_object_counting", n_train=5, n_val=6, test_size=7).load_splits().sizes() == \
        {"train": 5, "val": 6, "test": 7}
    with pytest.raises(ConfigError, match="gsm8k, bbh_object_counting"):
        LayeredTask(base="hotpotqa")


def test_layered_graph_wires_each_field_separately():
    engine, backend = scripted_engine(reply_fn=lambda r: f"{r.tag} says\nAnswer: 72")
    task = LayeredTask()
    out, graph, params = run_forward(task, EX72, engine)
    assert len(params) == 5 and len(backend.requests) == 5
    by_name = {v.op.name: v for v in graph.variables if v.op}
    assert [f for f, _ in by_name["layer2_a"].op.inputs] == ["system_prompt", "question", "note_a", "note_b"]
    assert by_name["layer2_b"].op.inputs[2][1] is by_name["layer1_a"]
    assert [v for _, v in out.op.inputs][2:] == [by_name["layer2_a"], by_name["layer2_b"]]
    assert "forward:layer2_a says" in out.op.prompt[1]["content"] and "forward:layer1_a" not in out.op.prompt[1]["content"]
    assert {p.id for p in graph.minimal_subgraph(out).parameters()} == {p.id for p in params}
    assert task.metric(out.value, EX72).score == 1.0


def test_layered_bbh_parses_the_integer_for_the_bbh_metric():
    example = load_bbh("object_counting")[0]
    engine, _ = scripted_engine(reply_fn=lambda r: f"Answer: {example.target}")
    out, _, _ = run_forward(LayeredTask(base="bbh_object_counting"), example, engine)
    assert out.op.name == "parse_integer_answer" and out.value == example.target
    assert LayeredTask(base="bbh_object_counting").metric(out.value, example).feedback.startswith("Correct")


def test_layered_sim_guidance_upstream_reaches_the_solver_prompt():
    """In the simulator, an upstream node that follows guidance echoes it, so the solver's prompt holds it."""
    task = LayeredTask()
    splits = task.load_splits()
    world = task.sim_world(splits)
    assert [i.applies_to for i in world.rubric] == HOMES
    item = world.rubric[0]
    engine = build_engine({"provider": "sim", "model": "sim-1", "cache": {"enabled": False}}, sim_world=world)
    example = splits.val[0]
    params = ParameterSet(task.initial_parameters())
    params["layer1_a.instruction"].update(params["layer1_a.instruction"].value + " " + item.guidance, step=1)

    async def go():
        with Tape(example.id):
            return await task.forward(example, params, {"forward": engine})

    out = asyncio.run(go())
    solver_prompt = "\n".join(m["content"] for m in out.op.prompt).lower()
    assert item.guidance.lower() not in solver_prompt  # the guidance itself is only in layer1_a's instruction ...
    assert any(k.lower() in solver_prompt for k in item.keywords)  # ... but its echo reaches the solver


# ---- hotpotqa_rag ----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def hotpot_rows():
    return json.loads(HOTPOT_FILE.read_text())


def test_hotpotqa_split_is_fixed_file_order(hotpot_rows):
    splits = HotpotQARAGTask().load_splits()
    assert splits.sizes() == {"train": 15, "val": 18, "test": 20}
    ids = [f"hotpotqa-{r['_id']}" for r in hotpot_rows]
    assert [e.id for e in splits.train + splits.val + splits.test] == ids
    first = splits.train[0]
    assert first.input == hotpot_rows[0]["question"] and first.target == hotpot_rows[0]["answer"]
    assert first.meta["supporting_titles"] == ["Scott Derrickson", "Ed Wood"] and len(first.meta["passages"]) == 10
    seeded = HotpotQARAGTask(seed=1).load_splits()
    assert seeded == HotpotQARAGTask(seed=1).load_splits() and seeded != splits
    with pytest.raises(ConfigError, match="full dev set"):
        HotpotQARAGTask(n_train=200, n_val=300).load_splits()
    assert HotpotQARAGTask(n_test=5).load_splits().test == splits.test[:5]


def test_hotpotqa_ships_its_licence_notice():
    text = (HOTPOT_FILE.parent / "LICENSE").read_text()
    assert "CC BY-SA 4.0" in text and "hotpotqa.github.io" in text


def test_answer_normalization_em_and_f1():
    assert exact_match("The Seine.", "Seine") == 1.0 and exact_match("Seine river", "Seine") == 0.0
    assert token_f1("Seine river", "the Seine") == pytest.approx(2 / 3)
    assert token_f1("no", "yes") == 0.0 and token_f1("yes", "yes") == 1.0


def test_hotpotqa_metric_feedback_names_answer_and_missing_passages(hotpot_rows):
    example = HotpotQARAGTask().load_splits().train[1]  # Chief of Protocol; Kiss and Tell (1945 film), Shirley Temple
    right = hotpotqa_metric({"answer": "chief of protocol", "answer_line": True,
                             "retrieved_titles": ["Shirley Temple", "Kiss and Tell (1945 film)"]}, example)
    assert right.score == 1.0
    assert right.feedback == ("Correct: expected 'Chief of Protocol', got 'chief of protocol' (EM 1, F1 1.00). "
                              "All 2 supporting passages were retrieved.")
    partly = hotpotqa_metric({"answer": "Protocol officer", "answer_line": True,
                              "retrieved_titles": ["Shirley Temple", "Meet Corliss Archer"]}, example, score="f1")
    assert partly.score == pytest.approx(0.4)
    assert partly.feedback == ("Partly correct: expected 'Chief of Protocol', got 'Protocol officer' (EM 0, F1 0.40). "
                               "Supporting passages not retrieved (1 of 2 retrieved): 'Kiss and Tell (1945 film)'.")
    wrong = hotpotqa_metric("I think it was an ambassador.", example)
    assert wrong.score == 0.0 and wrong.feedback.startswith("Wrong: expected 'Chief of Protocol', got 'I think")
    assert "no 'Answer: <answer>' line" in wrong.feedback
    empty = hotpotqa_metric({"answer": "", "retrieved_titles": []}, example)
    assert empty.score == 0.0 and "'Answer: <answer>' is missing" in empty.feedback


def test_retrieve_is_traced_bm25_with_exclusion():
    example = HotpotQARAGTask().load_splits().train[0]
    passages = Variable(example.meta["passages"], role="passages")
    hop1 = retrieve(Variable("Thinking...\nQuery: Scott Derrickson director", role="query"), passages, 1)
    assert hop1.value.startswith("«Scott Derrickson»") and hop1.op.name == "retrieve" and "BM25" in hop1.op.description
    hop2 = retrieve(Variable("Query: Scott Derrickson", role="query"), passages, 2, exclude=hop1)
    assert "«Scott Derrickson»" not in hop2.value and len(hop2.value.splitlines()) == 2
    assert hop1 in hop2.inputs


def test_hotpotqa_system_runs_two_hops_and_returns_answer_with_sources():
    task = HotpotQARAGTask()
    example = task.load_splits().train[0]

    def reply(request):
        if request.tag == "forward:query_writer":
            return "Query: Scott Derrickson nationality"
        if request.tag == "forward:followup_query_writer":
            return "Query: Ed Wood American filmmaker"
        return "Both are American.\nAnswer: yes"

    engine, backend = scripted_engine(reply_fn=reply)
    out, graph, params = run_forward(task, example, engine)
    assert out.value["answer"] == "yes" and out.value["retrieved_titles"][0] == "Scott Derrickson"
    assert "Ed Wood" in out.value["retrieved_titles"] and len(out.value["retrieved_titles"]) == 4
    assert task.metric(out.value, example).feedback.endswith("All 2 supporting passages were retrieved.")
    assert params["answer.demos"].value in backend.requests[2].user_text
    assert "«Scott Derrickson»" in backend.requests[1].user_text  # the second hop sees the first hop's passages
    sub = graph.minimal_subgraph(out)
    assert {p.id for p in sub.parameters()} == {p.id for p in params}
    assert [v.op.name for v in sub.variables if v.op].count("retrieve") == 2


# ---- the simulator rubrics -------------------------------------------------------------------------

@pytest.mark.parametrize("task", [GSM8KTask(use_calculator=True), LayeredTask(), LayeredTask(base="bbh_object_counting"),
                                  HotpotQARAGTask()], ids=["gsm8k", "layered", "layered_bbh", "hotpotqa_rag"])
def test_rubric_keywords_are_absent_from_data_and_initial_values(task):
    """Otherwise the simulator would credit guidance nobody gave."""
    splits = task.load_splits()
    world = task.sim_world(splits)
    assert 3 <= len(world.rubric) <= 4
    every = splits.train + splits.val + splits.test
    assert set(world.answers) == {e.input for e in every}
    texts = [e.input for e in every] + [p for e in every for p in e.meta.get("passages", [])]
    texts += [str(p.value) for p in task.initial_parameters()]
    low = [t.lower() for t in texts]
    for item in world.rubric:
        for keyword in item.keywords:
            assert not any(keyword.lower() in t for t in low), (item.key, keyword)
        assert any(k.lower() in item.guidance.lower() for k in item.keywords), item.key
        assert any(k.lower() in item.echo.lower() for k in item.keywords), item.key
        names = {p.id for p in task.initial_parameters()}
        assert set(item.applies_to) <= names, item.key


# ---- one optimization step through Hydra, on the simulator ---------------------------------------------

PARAMS = {
    "gsm8k": {"instruction"},
    "layered": {"layer1_a.instruction", "layer1_b.instruction", "layer2_a.instruction", "layer2_b.instruction",
                "solver.instruction"},
    "hotpotqa_rag": {"query.instruction", "followup_query.instruction", "answer.instruction", "answer.demos"},
}


@pytest.mark.parametrize("credit", [["credit=backprop"], ["credit=trace", "optimizer=joint"]], ids=["backprop", "trace"])
@pytest.mark.parametrize("name,extra", [("gsm8k", []), ("gsm8k", ["task.use_calculator=true"]), ("layered", []),
                                        ("layered", ["task.base=bbh_object_counting"]), ("hotpotqa_rag", [])],
                         ids=["gsm8k", "gsm8k_calculator", "layered", "layered_bbh", "hotpotqa_rag"])
def test_one_step_through_hydra_on_the_simulator(name, extra, credit, tmp_path):
    overrides = [f"task={name}", *credit, "trainer.max_steps=1", "trainer.val_size=5", "trainer.test_size=5",
                 "trainer.progress=false", f"run_dir={tmp_path}", *extra]
    with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base="1.3"):
        cfg = compose(config_name="config", overrides=overrides)
    summary = run_experiment(cfg)
    expected = PARAMS[name] | ({"calculator.description"} if "task.use_calculator=true" in extra else set())
    assert summary["task"] == name and summary["simulated"] is True and summary["steps"] == 1
    assert summary["credit"] == credit[0].split("=")[1]
    assert summary["splits"]["val"] == 5 and summary["splits"]["test"] == 5
    assert set(summary["parameters"]) == expected
    assert summary["phases"]["credit"]["calls"] + summary["phases"]["optimizer"]["calls"] > 0
    assert 0.0 <= summary["val"]["final"] <= 1.0 and summary["test"]["final"] is not None
    assert json.loads((tmp_path / "summary.json").read_text())["task"] == name
    assert (tmp_path / "gradients.jsonl").read_text().strip()  # credit was recorded
