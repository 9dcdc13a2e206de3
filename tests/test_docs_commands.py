"""Every shell command in README.md and docs/*.md runs as written: a doc that drifts from the code fails here.

Each file's shell blocks run in order, in a scratch working directory that mirrors the checkout (so relative
paths work and runs land in the scratch directory), with `python` the project's interpreter. The only changes to
a command, all mechanical:
- the endpoint: real providers are reached through the local provider server (`OPENAI_BASE_URL`,
  `ANTHROPIC_BASE_URL`; a `http://localhost:<port>/v1` in a command becomes the server's address), with a dummy
  key in the environment as a reader would have exported a real one (a placeholder `KEY=...` gets it too);
- `python -m experiments.run` gets small sizes appended (one step, 4 validation and 4 test examples) for every
  size option the command does not set itself, so the suite stays fast;
- placeholders of docs/new-task.md's template: `/path/to/this/repo` is the checkout, `/path/to/my_project` is
  tests/plugin_example (whose my_tasks.py is that doc's code block).
Commands that are not run here say why in NOT_RUN.
"""
from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from wire_model import wire_reply

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
BLOCK = re.compile(r"^```(?:bash|sh|shell|console)\n(.*?)^```", re.S | re.M)
NOT_RUN = {
    "make test": "the suite itself: CI runs it",
    "make bench": "its own long target; its fast slice is tests/test_bench_smoke.py",
    "make reliability": "its own long target; its fast slice runs in this suite",
    "make demo": "runs the default experiment; tests/test_experiment_run.py runs the same command line",
    "pip install": "extras are installed by the test set-up itself (experiments.extras)",
}
FAST = {"trainer.max_steps": "1", "trainer.val_size": "4", "trainer.test_size": "4", "trainer.progress": "false"}
SKIP_DIRS = {".git", ".venv", "runs", ".cache", "outputs", "multirun", "__pycache__"}


def shell_commands(path: Path) -> list[str]:
    """The commands of a file's shell blocks, continuation lines joined, comments and prompts dropped."""
    out = []
    for block in BLOCK.findall(path.read_text(encoding="utf-8")):
        for line in block.replace("\\\n", " ").splitlines():
            line = line.strip().removeprefix("$ ")
            if line and not line.startswith("#"):
                out.append(line)
    return out


def not_run(command: str) -> str | None:
    return next((why for key, why in NOT_RUN.items() if key in command), None)


def adapt(command: str, server) -> str:
    command = re.sub(r"\b([A-Z_]*API_KEY)=\.\.\.", r"\1=dummy-local-key", command)
    command = re.sub(r"https?://localhost:\d+/v1", server.openai_base_url, command)
    command = command.replace("/path/to/this/repo", str(ROOT)).replace("/path/to/my_project",
                                                                           str(ROOT / "tests" / "plugin_example"))
    if "experiments.run" in command and "resume=" not in command:
        head, sep, comment = command.partition("  #")
        present = {w.split("=", 1)[0].lstrip("+") for w in shlex.split(head) if "=" in w}
        extra = [f"{k}={v}" for k, v in FAST.items() if k not in present]
        command = head.rstrip() + " " + " ".join(extra)
    return command


def scratch(tmp_path: Path) -> Path:
    """A working directory whose entries point at the checkout's (runs and caches stay local to it)."""
    cwd = tmp_path / "checkout"
    cwd.mkdir()
    for entry in ROOT.iterdir():
        if entry.name not in SKIP_DIRS or entry.name == ".venv":
            (cwd / entry.name).symlink_to(entry)
    return cwd


@pytest.mark.parametrize("doc", DOCS, ids=[str(d.relative_to(ROOT)) for d in DOCS])
def test_every_shell_command_of_the_doc_runs_as_written(doc, server, tmp_path):
    commands = shell_commands(doc)
    if not commands:
        pytest.skip(f"{doc.name} has no shell commands")
    server.reply_fn = wire_reply
    cwd = scratch(tmp_path)
    bin_dir = str(Path(sys.executable).parent)
    env = {k: v for k, v in os.environ.items() if k != "TEXTGRAD_SWEEP_ID"}
    # A reader of a real-provider command has exported its key; the endpoint is the local server.
    env.update(PATH=f"{bin_dir}:{env.get('PATH', '')}", PYTHONPATH=str(ROOT), OPENAI_API_KEY="Qw7Zr3Kp9Lm2Xv",
               ANTHROPIC_API_KEY="Hd4Jn8Tb2Wc6Ys", OPENAI_BASE_URL=server.openai_base_url,
               ANTHROPIC_BASE_URL=server.anthropic_base_url)
    # One shell session per file, as a reader would type them: an `export` carries on to the next command.
    script, shown = ["set -e"], []
    for command in commands:
        if not_run(command):
            continue
        script += [f"echo '@@ {len(shown)}' >&2", adapt(command, server)]
        shown.append(command)
    proc = subprocess.run(["bash", "-c", "\n".join(script)], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=1200)
    markers = re.findall(r"^@@ (\d+)$", proc.stderr, re.M)
    last = shown[int(markers[-1])] if markers else "(before the first command)"
    assert proc.returncode == 0, f"{doc.name}: `{last}` failed:\n{proc.stderr[-3000:]}"
    assert "Traceback" not in proc.stderr, f"{doc.name}: a traceback:\n{proc.stderr[-3000:]}"
    assert len(markers) == len(shown) and (shown or all(not_run(c) for c in commands))


def test_the_readme_opens_with_the_two_setup_commands():
    first = shell_commands(ROOT / "README.md")[:2]
    assert [c.split("#")[0].strip() for c in first] == ["make demo", "make test"]
