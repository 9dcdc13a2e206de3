"""The README's "Python API" example is run as written: on the simulator, and against the local OpenAI-compatible
test server with only the engine line changed."""
import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ENGINE_LINE = 'eng = tc.engine("sim")'
KEY = "-".join(["sk", "readme", "ExAmPlEkEy0123456789"])


def readme_example() -> str:
    """The first python block of the README's "Python API" section, verbatim."""
    text = (ROOT / "README.md").read_text()
    section = text.split("\n## Python API\n", 1)[1].split("\n## ", 1)[0]
    match = re.search(r"```python\n(.*?)```", section, re.DOTALL)
    assert match, "the Python API section has no python code block"
    return match.group(1)


def run_script(code: str, cwd: Path, env_extra: dict | None = None) -> subprocess.CompletedProcess:
    script = cwd / "example.py"
    script.write_text(code)
    env = {**os.environ, "PYTHONPATH": str(ROOT), **(env_extra or {})}
    return subprocess.run([sys.executable, str(script)], cwd=cwd, env=env, capture_output=True, text=True, timeout=120)


def test_the_example_is_short_and_has_one_engine_line():
    code = readme_example()
    assert code.count(ENGINE_LINE) == 1
    assert len([l for l in code.splitlines() if l.strip()]) <= 22


def test_readme_example_runs_on_the_simulator_and_prints_new_values(tmp_path):
    proc = run_script(readme_example(), tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    planner, solver = proc.stdout.strip().splitlines()[-2:]
    # Both stages received credit and were rewritten: the simulated optimizer appends the guidance it was told lacks.
    assert planner.startswith("Outline how to solve the problem.") and planner != "Outline how to solve the problem."
    assert solver.startswith("Solve the problem using the outline.") and solver != "Solve the problem using the outline."


def test_readme_example_runs_against_an_openai_compatible_server_by_changing_the_engine_line(tmp_path, server):
    def reply(body: dict) -> str:
        system = next((m["content"] for m in body["messages"] if m["role"] == "system"), "")
        if "You improve one variable" in system:  # the TGD update call: a well-formed new value
            user = body["messages"][-1]["content"]
            name = re.search(r"updating the variable '([^']+)'", user).group(1)
            return f"<NEW_VALUE>\nImproved {name} instruction: be precise.\n</NEW_VALUE>"
        if "optimization system" in system:  # a backprop edge call
            return "Ask for the final number on its own line."
        return "The answer is 12."  # forward calls

    server.reply_fn = reply
    line = (f'eng = tc.engine(provider="openai", model="gpt-4o-mini", base_url="{server.openai_base_url}", '
            'api_key_env="README_TEST_KEY", max_retries=0)')
    code = readme_example().replace(ENGINE_LINE, line)
    proc = run_script(code, tmp_path, {"README_TEST_KEY": KEY})
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip().splitlines()[-2:] == ["Improved planner instruction: be precise.",
                                                     "Improved solver instruction: be precise."]
    # 2 examples x (planner, solver) forward calls + 2 x 3 backprop edges (solver->solver instruction,
    # solver->outline, planner->planner instruction) + one TGD call per parameter.
    assert len(server.answered()) == 4 + 6 + 2
    assert KEY[3:12] not in proc.stdout + proc.stderr
