"""Reading outside the allowed paths fails on the kernel layers alone (issue 13, item 4).

The audit hook refuses such reads too; these tests switch it off (a test-only switch of
the parent, ``sandbox._arun_without_audit``, which user code cannot reach: it only
chooses the program) to prove that the mount namespace and the per-run uid hold on
their own.  On machines without those kernel layers the tests are skipped, saying why.
"""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path

import pytest

from textgrad_core import sandbox
from textgrad_core.sandbox import SandboxResult, run_code

PROJECT = Path(__file__).resolve().parent.parent

PROBE = (
    "import json, os, sys\n"
    "out = {}\n"
    "for p in json.loads(sys.stdin.read()):\n"
    "    try:\n"
    "        with open(p, 'rb') as f:\n"
    "            out[p] = 'read %d bytes' % len(f.read(1 << 16))\n"
    "    except OSError as e:\n"
    "        out[p] = 'refused ' + type(e).__name__\n"
    "print(json.dumps(out))\n"
)


def probe_reads(paths: list[str], *, audit: bool) -> tuple[dict[str, str], SandboxResult]:
    """What the child gets when it opens each path (stdin carries the list)."""
    if audit:
        res = run_code(PROBE, stdin=json.dumps(paths))
    else:
        res = asyncio.run(sandbox._arun_without_audit(PROBE, stdin=json.dumps(paths)))
    assert res.ok, (res.error, res.stderr[-500:])
    return json.loads(res.stdout), res


@pytest.fixture(scope="module")
def layers() -> list[str]:
    res = run_code("pass")
    assert res.ok, res
    return res.layers


def require_mount_layers(layers: list[str]) -> None:
    if "mountns" not in layers:
        pytest.skip("no mount namespace on this machine (needs root or unprivileged user "
                    "namespaces): only the audit hook protects reads here")


def an_existing_file(root: Path) -> str:
    """Some readable file below ``root`` (the test needs a real target)."""
    for dirpath, _dirs, names in os.walk(root):
        for name in sorted(names):
            path = os.path.join(dirpath, name)
            if os.path.isfile(path) and os.access(path, os.R_OK):
                return path
    pytest.skip(f"no readable file below {root} to probe")


def a_file_beside_the_project() -> str | None:
    """A readable file in a sibling directory of the project (outside every hidden path
    the older sandbox knew about: neither home, temp root nor the parent's cwd)."""
    parent = PROJECT.parent
    for sibling in sorted(parent.iterdir()):
        if sibling == PROJECT or not sibling.is_dir() or sibling.name.startswith("."):
            continue
        for dirpath, _dirs, names in os.walk(sibling):
            for name in sorted(names):
                path = os.path.join(dirpath, name)
                if os.path.isfile(path) and os.access(path, os.R_OK):
                    return path
    return None


def test_outside_files_are_unreadable_without_the_audit_hook(layers, tmp_path):
    require_mount_layers(layers)
    secret = tmp_path / "secret.txt"
    secret.write_text("sk-file-secret")
    home = Path(os.path.expanduser("~"))
    targets = {
        "/etc/shadow": "/etc/shadow",
        "project task data": an_existing_file(PROJECT / "tasks" / "data"),
        "project source": str(PROJECT / "tasks" / "__init__.py"),
        "project .env": str(PROJECT / ".env"),
        "parent's temp file": str(secret),
        "home": str(home / ".bashrc") if (home / ".bashrc").exists() else an_existing_file(home),
    }
    beside = a_file_beside_the_project()
    if beside is not None and PROJECT.parent != Path("/"):
        targets["file beside the project"] = beside
    for label, path in targets.items():
        if label != "project .env":
            assert os.path.exists(path), (label, path)  # readable by the parent
    got, res = probe_reads(list(targets.values()), audit=False)
    assert "audit-hook" not in res.layers
    for label, path in targets.items():
        assert got[path].startswith("refused"), (label, path, got[path])
    assert "sk-file-secret" not in res.stdout + res.stderr


def test_top_level_files_read_empty_without_the_audit_hook(layers):
    require_mount_layers(layers)
    files = [f"/{n}" for n in sorted(os.listdir("/"))
             if os.path.isfile(f"/{n}") and not os.path.islink(f"/{n}")
             and os.access(f"/{n}", os.R_OK) and os.path.getsize(f"/{n}") > 0]
    if not files:
        pytest.skip("no non-empty regular file at / on this machine")
    got, _ = probe_reads(files, audit=False)
    for path in files:
        assert got[path] in ("read 0 bytes", "refused PermissionError",
                             "refused FileNotFoundError"), (path, got[path])


def test_other_processes_environment_unreadable_without_the_audit_hook(layers):
    require_mount_layers(layers)
    if os.geteuid() == 0 and "uid" not in layers:
        pytest.skip("root without a per-run uid (rootless container with a small uid map): "
                    "/proc/<pid>/environ of other processes is protected by the audit hook only")
    targets = ["/proc/1/environ", f"/proc/{os.getpid()}/environ"]
    got, _ = probe_reads(targets, audit=False)
    for path in targets:
        assert got[path].startswith("refused"), (path, got[path])


def test_allowed_reads_still_work_without_the_audit_hook(layers):
    """The reduced view keeps what programs need: the stdlib, zoneinfo, devices."""
    require_mount_layers(layers)
    targets = [os.path.realpath(os.__file__), "/dev/urandom", "/etc/passwd"]
    got, _ = probe_reads(targets, audit=False)
    assert got[targets[0]].startswith("read") and got[targets[0]] != "read 0 bytes"
    assert got["/dev/urandom"].startswith("read")


def test_the_same_reads_are_refused_by_the_audit_hook(tmp_path):
    """With the hook on (and on every machine), reading outside is refused too."""
    secret = tmp_path / "secret.txt"
    secret.write_text("x")
    targets = ["/etc/shadow", str(PROJECT / "tasks" / "__init__.py"), str(secret)]
    got, _ = probe_reads(targets, audit=True)
    for path in targets:
        assert got[path] == "refused SandboxViolation", (path, got[path])
