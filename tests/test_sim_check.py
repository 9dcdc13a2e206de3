"""The simulator's answer check: a task whose parser never reads the simulator's replies is told so at once."""
import sys
from pathlib import Path

from textgrad_core.engines import EngineSet
from textgrad_core.engines.sim_check import sim_answer_check_sync
from textgrad_core.ops import LLMCall, traced
from textgrad_core.variable import Variable
from tasks.bbh_object_counting import ObjectCountingTask
from tasks.registry import TASKS, load_task

sys.path.insert(0, str(Path(__file__).parent / "plugin_example"))
from my_tasks import MyTask  # noqa: E402  (docs/new-task.md's task)

SIM = {"provider": "sim", "model": "sim-1", "cache": {"enabled": False}}


@traced(output_role="language label parsed from the response")
def parse_language(response: str) -> str:
    """The word after the last 'Language:' ('' when there is none)."""
    return response.rsplit("Language:", 1)[-1].strip().lower() if "Language:" in response else ""


class LanguageTask(MyTask):
    """docs/new-task.md's task with a parser that reads 'Language:' (the simulator writes 'Answer:')."""

    name = "my_language"

    def __init__(self, answer_format: str | None = None):
        self.answer_format = answer_format

    async def forward(self, example, params, engines):
        llm = LLMCall(engines["forward"], params["instruction"], name="classifier")
        return parse_language(await llm.acall(Variable(example.input, role="product review")))

    def sim_world(self, splits):
        world = super().sim_world(splits)
        return world.model_copy(update={"answer_format": self.answer_format}) if self.answer_format else world


def check(task, config=SIM):
    splits = task.load_splits()
    engines = EngineSet({"forward": config}, sim_world=task.sim_world(splits))
    return engines, sim_answer_check_sync(task, splits, engines)


def test_a_parser_that_never_reads_the_simulator_answer_warns_in_one_line():
    engines, warning = check(LanguageTask())
    assert warning is not None and "\n" not in warning
    assert warning.startswith("SIMULATION: 0 of 4 simulator replies parsed")
    assert "'parse_language'" in warning and "'Answer: {answer}'" in warning and "SimWorld.answer_format" in warning
    assert "LanguageTask.sim_world()" in warning
    # The check's calls are its own: the run's engines saw none.
    assert engines.ledger.total().calls == 0


def test_no_warning_once_the_answer_format_matches_the_parser_nor_for_working_tasks():
    assert check(LanguageTask(answer_format="Language: {answer}"))[1] is None
    assert check(MyTask())[1] is None
    assert check(ObjectCountingTask())[1] is None


def test_every_registered_task_reads_its_simulator_answers():
    for name in sorted(TASKS):
        assert check(load_task(name))[1] is None, name


def test_no_check_without_the_simulator_on_the_forward_role_or_without_known_answers():
    task = LanguageTask()
    splits = task.load_splits()
    engines = EngineSet({"forward": {"provider": "scripted", "model": "s", "cache": {"enabled": False}}})
    assert sim_answer_check_sync(task, splits, engines) is None
    unknown = EngineSet({"forward": SIM})  # no world: the simulator knows no answer, so it cannot tell
    assert sim_answer_check_sync(task, splits, unknown) is None
