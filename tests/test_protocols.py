"""Each published scorer on cases derived from reading the peer's code (input -> expected score), the strict
scorers' parsing cases of issue 11, and one clear error for an unknown protocol."""
import asyncio

import pytest

from tasks.bbh import BBHTask
from tasks.bbh_object_counting import ObjectCountingTask, read_integer_answer
from tasks.bbh_word_sorting import WordSortingTask, parse_sorted_words
from tasks.gsm8k import GSM8KTask, gsm8k_metric, parse_answer
from tasks.hotpotqa_rag import HotpotQARAGTask, hotpotqa_metric
from tasks.hotpotqa_rag import parse_answer as hotpotqa_parse
from tasks.protocols import gepa, textgrad, trace
from tasks.registry import load_task
from textgrad_core.errors import ConfigError
from textgrad_core.task import Example
from textgrad_core.variable import Variable


def ex(target, question="q"):
    return Example(id="x", input=question, target=target)


# ---- TextGrad: the string-based integer check (textgrad/tasks/big_bench_hard.py) -------------------------

@pytest.mark.parametrize("text,value", [
    ("Answer: 8", 8),
    ("I count 3 + 5.\nAnswer: 8", 8),
    ("Answer: 8 (3 + 5)", 5),           # the LAST token holding a digit decides: the remark's '5)'
    ("Answer: 7.5", 7),                 # cut at the first '.'
    ("Answer: -3", 3),                  # only digits are kept: the minus sign goes
    ("Answer: 1,234", 1234),            # ... and so do thousands separators
    ("Answer: $12.", 12),
    ("Answer: eight", 0),               # no token with a digit: 0
    ("", 0),
    ("Answer: .5", 0),                  # nothing before the '.': unreadable, 0
    ("the 2nd and 3rd", 3),             # '3rd' -> 3
    ("Answer: x²", 0),                  # a superscript is a digit to isdigit() but not to int(): 0
])
def test_textgrad_reads_integers_as_textgrad_does(text, value):
    assert textgrad.read_integer(text) == value


@pytest.mark.parametrize("response,target,score", [
    ("Let me count.\nAnswer: 8", "8", 1.0),
    ("Answer: 8 (1 + 2 + 5)", "8", 0.0),     # the trailing remark is read instead
    ("Answer: 3.5", "3", 1.0),              # N.5 reads as N
    ("Answer: 3", "-3", 1.0),               # minus signs are dropped on both sides
    ("Answer: eight", "8", 0.0),
    ("no digits at all", "0", 1.0),         # unreadable is 0, and so is the target 0
])
def test_textgrad_integer_check(response, target, score):
    result = textgrad.integer_check(response, target)
    assert result.score == score
    assert f"Output: {int(score)}" in result.feedback and "ground truth answer" in result.feedback


def test_textgrad_judge_request_and_verdicts():
    request = textgrad.judge_request("Sort: b a", "a b", "Reasoning.\nAnswer: a b", tag="t")
    assert request.system == textgrad.JUDGE_SYSTEM and request.tag == "judge:t"
    assert request.user_text == (textgrad.JUDGE_INSTRUCTION + "\n**Question for the task**: Sort: b a\n"
                                 "**Ground truth answer**: a b\n"
                                 "**Reasoning and prediction from the language model**: Reasoning.\nAnswer: a b")
    assert textgrad.read_accuracy("ok <ACCURACY> 1 </ACCURACY>") == 1.0
    assert textgrad.read_accuracy("<ACCURACY>0</ACCURACY> and <ACCURACY> 1 </ACCURACY>") == 0.0  # the first wins
    assert textgrad.read_accuracy("<ACCURACY> 1") == 1.0  # no closing tag: the rest of the reply
    for unreadable in ("SCORE: 1", "<ACCURACY> yes </ACCURACY>", "<ACCURACY> 2 </ACCURACY>", "<ACCURACY></ACCURACY>"):
        assert textgrad.read_accuracy(unreadable) is None


def test_textgrad_word_sorting_is_scored_by_the_judge_engine():
    task = WordSortingTask(protocol="textgrad")
    assert task.initial_parameters()[0].value == textgrad.BBH_STARTING_PROMPT  # "...a numerical value", as published
    example = ex("apple banana", "Sort: banana apple")

    class Engines:
        def __init__(self, engine):
            self.engine = engine

        def __getitem__(self, role):
            assert role == "judge"
            return self.engine

    class Judge:
        def __init__(self, replies):
            self.replies, self.requests = list(replies), []

        async def acomplete(self, request):
            self.requests.append(request)
            return type("Reply", (), {"text": self.replies.pop(0)})()

    fake = Judge(["The prediction matches. <ACCURACY> 1 </ACCURACY>", "<ACCURACY> 0 </ACCURACY>", "I am not sure."])
    prediction = Variable("Reasoning...\nAnswer: apple banana", role="response")
    scores = [asyncio.run(task.loss(prediction, example, Engines(fake))).score for _ in range(3)]
    assert scores == [1.0, 0.0, None]  # a reply without a verdict is unscored, never a silent 0
    assert "**Ground truth answer**: apple banana" in fake.requests[0].user_text


# ---- Trace: eval_metric of examples/bbh/run_prompt_bigbench_trace.py ------------------------------------

@pytest.mark.parametrize("prediction,target,score", [
    ("(B)", "(B)", 1.0),
    ("I pick (A), no wait, (B)", "(B)", 1.0),   # the last option named
    ("(B) or maybe (A)", "(B)", 0.0),
    ("B", "(B)", 0.0),                          # a bare letter names no option
    ("B.", "(B)", 0.0),
    ("(b)", "(B)", 0.0),
    ("8", "8", 1.0),
    ("8.", "8", 0.0),                           # no normalization at all
    ("True", "True", 1.0),
    ("true", "True", 0.0),
    (" Yes", "Yes", 0.0),
    (8, "8", 0.0),                              # an int is not the string '8'
    (None, "8", 0.0),
])
def test_trace_metric(prediction, target, score):
    assert trace.score(prediction, target) == score
    result = trace.metric(prediction, target)
    assert result.score == score
    assert result.feedback == ("The answer is correct! No need to change anything." if score else
                               f'The answer is wrong. We expect the output of your answer to be "{target}". Please '
                               "modify the prompt and relevant parts of the program to help LLM produce the right "
                               "answer.")


def test_trace_protocol_of_bbh():
    task = BBHTask(subtask="navigate", protocol="trace")
    template, code = task.initial_parameters()
    assert template.value.endswith("Question: {question}\nAnswer:\n") and "Question: \nAnswer: \n" in template.value
    namespace: dict = {}
    exec(code.value, namespace)  # our own fixed starting code, Trace's rule: the text after the FIRST 'Answer:'
    assert namespace["extract_answer"]("Think.\nAnswer: Yes\nAnswer: No") == "Yes"
    with pytest.raises(IndexError):
        namespace["extract_answer"]("no marker")
    assert task.info()["protocol"] == "trace"


def test_trace_llm_call_asks_for_json_only_when_the_prompt_mentions_it():
    call = trace.TraceLLMCall(None, name="answer_llm", output_role="response")
    plain = call._request(Variable("Question: x\nAnswer:", role="prompt"), 0)
    assert plain.system == "You are a helpful assistant.\n" and plain.response_format is None
    assert plain.max_tokens == 1024
    json_mode = call._request(Variable("Reply in JSON: {\"answer\": ...}", role="prompt"), 0)
    assert json_mode.response_format is not None and json_mode.response_format.type == "json_object"


# ---- GEPA / DSPy: answer_exact_match and the chat adapter's answer field ----------------------------------

@pytest.mark.parametrize("answer,gold,score", [
    ("The Seine", "Seine", 1.0),            # articles go
    ("seine!", "Seine", 1.0),               # punctuation and case go
    ("Café", "Cafe\u0301", 1.0),            # NFD: the composed and decomposed é agree
    ("the river Seine", "Seine", 0.0),
    ("Paris", ["London", "paris"], 1.0),    # any gold answer
    ("yes", "no", 0.0),
])
def test_gepa_exact_match(answer, gold, score):
    assert gepa.answer_metric(answer, gold).score == score


@pytest.mark.parametrize("reply,answer", [
    ("[[ ## reasoning ## ]]\nIt is in Paris.\n\n[[ ## answer ## ]]\nthe Seine\n\n[[ ## completed ## ]]", "the Seine"),
    ("[[ ## answer ## ]] Seine", "Seine"),                                  # content on the header line
    ("[[ ## answer ## ]]\nSeine\n[[ ## answer ## ]]\nLoire", "Seine"),      # the first answer field wins
    ("Answer: Seine", None),                                                # no field: no answer
])
def test_gepa_answer_field(reply, answer):
    assert gepa.answer_field(reply) == answer
    assert gepa.metric(reply, "Seine").score == float(answer is not None and answer.endswith("Seine"))


def test_gepa_protocol_differs_from_strict_on_unicode():
    example = ex("Cafe\u0301")
    assert gepa.answer_metric("Café", example.target).score == 1.0
    assert hotpotqa_metric({"answer": "Café", "answer_line": True}, example).score == 0.0  # strict: no NFD


# ---- strict: the parsing cases of issue 11 ---------------------------------------------------------------

@pytest.mark.parametrize("response,number", [
    ("Answer: 24 (because 2 + 3 = 5)", "24"),
    ("Answer: 18 apples, 4 left", "18"),
    ("So 3 + 4 = 7.\nAnswer:\n7", "7"),                  # the answer on the next line
    ("Answer: 5\nAnswer: $1,200.00 total", "1200"),       # the LAST 'Answer:' counts
    ("no marker: 3 then 9", "9"),                        # no 'Answer:': the last number
])
def test_strict_gsm8k_reads_the_first_number_after_answer(response, number):
    assert parse_answer(response)[0] == number
    assert gsm8k_metric(response, ex(number)).score == 1.0


@pytest.mark.parametrize("response,number", [
    ("Answer: 6 (1 + 2 + 3)", "6"),
    ("Answer: There are 6 items (1 + 5).", "6"),
    ("I see 2 and 4.\nAnswer:\n6", "6"),
    ("2 cats and 4 dogs make 6", "6"),
])
def test_strict_object_counting_reads_like_gsm8k(response, number):
    assert read_integer_answer(response) == number
    assert ObjectCountingTask().metric(read_integer_answer(response), ex(number)).score == 1.0


@pytest.mark.parametrize("response,answer", [
    ("Reasoning.\nAnswer:\nthe Seine", "the Seine"),
    ("Answer:   \n\n  Paris  \nmore text", "Paris"),
    ("Answer: Paris", "Paris"),
    ("no marker\nParis", "Paris"),
])
def test_strict_hotpotqa_reads_the_answer_on_the_next_line(response, answer):
    assert hotpotqa_parse(response)[0] == answer
    assert parse_sorted_words(response).value == answer  # word sorting reads the answer the same way


@pytest.mark.parametrize("answer,target,score", [
    ("(B)", "(B)", 1.0), ("B", "(B)", 1.0), ("B.", "(B)", 1.0), ("(B", "(B)", 1.0),
    ("A date after that is (B)", "(B)", 1.0),
    ("A date after that is unclear", "(A)", 0.0),   # no longer read as option (A)
    ("a", "(A)", 0.0),
])
def test_strict_bbh_reads_a_bare_letter_only_when_it_is_the_whole_answer(answer, target, score):
    assert BBHTask(subtask="date_understanding").metric(answer, ex(target)).score == score


# ---- choosing a protocol ---------------------------------------------------------------------------------

@pytest.mark.parametrize("task,known", [
    ("bbh_object_counting", "strict, textgrad"), ("bbh_word_sorting", "strict, textgrad"), ("gsm8k", "strict, textgrad"),
    ("bbh", "strict, trace"), ("hotpotqa_rag", "strict, gepa"), ("humaneval", "strict"), ("tool_use", "strict"),
    ("battleship", "strict"), ("layered", "strict"), ("gsm8k_sc", "strict"),
])
def test_unknown_protocol_is_one_error_listing_the_tasks_protocols(task, known):
    with pytest.raises(ConfigError) as err:
        load_task({"name": task, "protocol": "dspy"})
    message = str(err.value)
    assert "\n" not in message and f"task {task}" in message and f"use one of {known} (" in message


def test_protocol_is_in_the_task_info():
    assert load_task({"name": "gsm8k", "protocol": "textgrad"}).info()["protocol"] == "textgrad"
    assert load_task({"name": "humaneval"}).info()["protocol"] == "strict"


def test_textgrad_gsm8k_sends_question_prefix_and_is_not_offered_with_the_calculator():
    with pytest.raises(ConfigError, match="use one of strict "):
        GSM8KTask(use_calculator=True, protocol="textgrad")
    assert textgrad.format_gsm8k_question("How many?") == "Question: How many?"
    assert GSM8KTask(protocol="textgrad").initial_parameters()[0].value.startswith("You will answer a mathemetical")


def test_gepa_protocol_rejects_f1():
    with pytest.raises(ConfigError, match="exact match"):
        HotpotQARAGTask(protocol="gepa", score="f1")
