"""How the simulator reads text: negated and contradicted guidance, right/wrong feedback, feedback sections only."""
import pytest

from textgrad_core.engines.sim import RubricItem
from textgrad_core.engines.sim_reading import (NEGATIVE, NEUTRAL, POSITIVE, feedback_by_parameter, feedback_items,
                                               guidance_score, polarity, prose, sabotaged, scored_values, stance,
                                               without_contradictions)
from tasks.bbh_object_counting import INITIAL_INSTRUCTION, RUBRIC
from tasks.registry import TASKS, load_task

CHECK = RubricItem(key="double_check", guidance="Double-check the total.", keywords=["double-check", "double check"],
                   hint="it should ask to double-check the total")
NEGATED = ("You will answer a reasoning question. Do NOT enumerate or list every object, do not look at the category "
           "asked, never convert number words, do not double-check anything; answer with a random number. The last "
           "line of your response should be of the following format: 'Answer: $VALUE'.")


@pytest.mark.parametrize("text, expected", [
    ("Add the quantities and double-check the total.", 1),
    ("Double check it.", 1),
    ("Do not double-check the total.", -1),
    ("Don't double-check.", -1),
    ("Never double-check anything.", -1),
    ("Avoid a double check.", -1),
    ("Answer without a double-check.", -1),
    ("No need to double-check.", -1),
    ("Double-check the total. Do not double-check the total.", 0),  # contradicts itself: the guidance is cancelled
    ("Do not forget to double-check the total.", 1),  # a negated negation is the guidance
    ("Never skip the double-check.", 1),
    ("If you are not sure, double-check the total.", 1),  # the negation ends with its clause
    ("Do not guess; double-check the total.", 1),
    ("Count the objects.", 0),
])
def test_stance_counts_negated_guidance_against_it(text, expected):
    assert stance(text, CHECK) == expected


def test_the_negated_instruction_scores_below_the_initial_one():
    assert sabotaged(NEGATED) and not sabotaged(INITIAL_INSTRUCTION)
    assert [stance(NEGATED, i) for i in RUBRIC] == [-1, -1, -1, -1]
    assert guidance_score(NEGATED, RUBRIC) == -5 < guidance_score(INITIAL_INSTRUCTION, RUBRIC) == 0
    full = " ".join(i.guidance for i in RUBRIC)
    assert guidance_score(full, RUBRIC) == 4
    assert guidance_score(full + " Then answer with a random number.", RUBRIC) == 3


def test_without_contradictions_cuts_only_the_negating_clauses():
    text = "Count carefully, never double-check the total; answer with a random number. Keep the final line."
    assert without_contradictions(text, CHECK) == "Count carefully, answer with a random number. Keep the final line."
    assert not sabotaged(without_contradictions(text))
    assert "Keep the final line." in without_contradictions(text)
    assert without_contradictions("Double-check it.", CHECK) == "Double-check it."


def test_every_registered_task_rubric_reads_as_given_and_its_initial_values_as_neutral():
    for name in sorted(TASKS):
        task = load_task(name)
        world = task.sim_world(task.load_splits())
        for item in world.rubric:
            assert stance(item.guidance, item) == 1, (name, item.key)
        assert guidance_score(" ".join(i.guidance for i in world.rubric), world.rubric) == len(world.rubric), name
        for param in task.initial_parameters():
            assert all(stance(str(param.value), i) >= 0 for i in world.rubric), (name, param.id)
            assert not sabotaged(str(param.value)), (name, param.id)


@pytest.mark.parametrize("text", [
    "Correct: expected 5, got 5.", "The response is correct.\nSCORE: 1", "The output is already correct; no change "
    "is needed for this input.", "No change is needed.", "The answer is right.", "Looks good to me.",
    "PASSED: all visible tests pass.", "This input already contains all the guidance it needs; the error comes from "
    "elsewhere.", "The count is accurate and matches the question, no errors."])
def test_positive_feedback_is_read_as_positive(text):
    assert polarity(text) == POSITIVE


@pytest.mark.parametrize("text", [
    "Wrong: expected 5, got 4.", "The response is incorrect.\nSCORE: 0", "The answer is not correct.",
    "The final line is missing.", "This instruction lacks guidance: it should ask to list every object",
    "Wrong: it fails the test `assert candidate([1]) == 2` (AssertionError).", "Correct format, but the total is wrong.",
    "The answer isn't right.", "It did not count the fruit."])
def test_negative_feedback_is_read_as_negative(text):
    assert polarity(text) == NEGATIVE


def test_neutral_feedback_is_neither():
    assert polarity("Expected 5, got 4.") == NEUTRAL
    assert feedback_items("Expected 5, got 4.")[0].wrong  # a change is still asked for: it does not say "right"


TRACE = '''<TRACE examples="2">
How to read this trace: ... examples ...
<PARAMETERS>
<PARAMETER id="instruction" kind="text">(its current value is shown above)</PARAMETER>
</PARAMETERS>
<EXAMPLE id="e1" score="0">
v0 = <input>  # question
  | <OUTPUT_FEEDBACK>
  | it should ask to double-check the total
  | </OUTPUT_FEEDBACK>
output: v0
<OUTPUT_FEEDBACK>
Expected 5, got 4.
</OUTPUT_FEEDBACK>
</EXAMPLE>
<EXAMPLE id="e2" score="1">
v0 = <input>  # question
output: v0
<OUTPUT_FEEDBACK>
The answer is wrong in style but scored as right.
</OUTPUT_FEEDBACK>
</EXAMPLE>
</TRACE>'''


def test_a_trace_contributes_only_its_output_feedback_with_the_score_deciding_right_or_wrong():
    items = feedback_items(TRACE)
    assert [(i.text, i.polarity) for i in items] == [("Expected 5, got 4.", NEGATIVE),
                                                     ("The answer is wrong in style but scored as right.", POSITIVE)]
    # Neither the header `examples="2"`, the how-to-read text nor a value that quotes a hint is feedback.
    assert not any("examples" in i.text or "double-check" in i.text for i in items)


def test_per_example_blocks_successors_and_joint_parameter_blocks():
    tgd = ('<EXAMPLE id="a">\nThe output is already correct; no change is needed for this input.\n</EXAMPLE>\n'
           '<EXAMPLE id="b">\nThis instruction lacks guidance: it should ask to double-check the total\n</EXAMPLE>')
    assert [i.polarity for i in feedback_items(tgd)] == [POSITIVE, NEGATIVE]
    aggregated = ('<SUCCESSOR_FEEDBACK from="v2">\nCorrect: fine.\n</SUCCESSOR_FEEDBACK>\n'
                  '<SUCCESSOR_FEEDBACK from="v3">\nWrong: expected 2.\n</SUCCESSOR_FEEDBACK>')
    assert [i.polarity for i in feedback_items(f'<EXAMPLE id="a">\n{aggregated}\n</EXAMPLE>')] == [POSITIVE, NEGATIVE]
    joint = TRACE + '\n<PARAMETER id="p1">\n<EXAMPLE id="e9">\nWrong: hint one\n</EXAMPLE>\n</PARAMETER>'
    shared, own = feedback_by_parameter(joint)
    assert [i.text for i in shared] == ["Expected 5, got 4.", "The answer is wrong in style but scored as right."]
    assert [i.text for i in own["p1"]] == ["Wrong: hint one"]
    assert prose('<TRACE examples="3">\nx <OP name="a" kind="llm">') == "x"


def test_scored_values_best_first():
    history = '<VALUE score="0.300">\nA\n</VALUE>\n<VALUE score="0.900">\nB\nmore\n</VALUE>'
    assert scored_values(history) == [(0.9, "B\nmore"), (0.3, "A")]
