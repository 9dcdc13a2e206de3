"""Secrets: API keys of several shapes planted in the environment of real runs (the engines send them to the local
server, which also echoes them back in replies and error messages) never appear, whole or as any 6-character
fragment, in any file the runs leave (run directories, the request cache), in stdout/stderr, or in an exception."""
from __future__ import annotations

import random
import string
import traceback
from pathlib import Path

import pytest

from provider_server import Reply, Status
from runs_cli import run_cli
from textgrad_core.engines import LLMRequest, build_engine
from textgrad_core.runlog import FRAGMENT
from wire_model import wire_reply

ALNUM = string.ascii_letters + string.digits


def _keys() -> dict[str, str]:
    # Generated, not written down: the repository holds no key-shaped literal.
    rng = random.Random(20240611)
    body = lambda n: "".join(rng.choice(ALNUM) for _ in range(n))  # noqa: E731
    return {"openai sk-": "sk-" + "proj-" + body(40), "anthropic sk-ant-": "sk-" + "ant-api03-" + body(48),
            "random 40-char": body(40), "short (7)": body(7)}


KEYS = _keys()
ENV = {"openai sk-": "REL_OPENAI_KEY", "anthropic sk-ant-": "REL_ANTHROPIC_KEY", "random 40-char": "REL_GATEWAY_CRED",
       "short (7)": "REL_SHORT_PASS"}
COMMON = ("trainer.max_steps=2", "trainer.batch_size=2", "trainer.val_size=4", "trainer.test_size=3",
          "trainer.progress=false", "engine.cache.enabled=true", "engine.cache.path=cache.sqlite", "engine.max_retries=2",
          "+engine.backoff_base=0.005", "+engine.backoff_max=0.02")


def windows(secret: str) -> set[str]:
    """Every FRAGMENT-character piece of a secret: finding any of them is a leak."""
    return {secret[i:i + FRAGMENT] for i in range(len(secret) - FRAGMENT + 1)}


def leaks_in(data: bytes, shapes: list[str]) -> list[str]:
    """The shapes of the keys any fragment of which appears in `data`."""
    text = data.decode("utf-8", errors="replace")
    return [shape for shape in shapes if any(w in text for w in windows(KEYS[shape]))]


def scan_tree(root: Path, shapes: list[str]) -> dict:
    """Every file under `root` (run directories, cache, sqlite side files): counts and leaks."""
    files = [p for p in root.rglob("*") if p.is_file()]
    leaks = [(str(p.relative_to(root)), shape) for p in files for shape in leaks_in(p.read_bytes(), shapes)]
    return {"files": len(files), "bytes": sum(p.stat().st_size for p in files), "leaks": leaks}


def echoing(shapes: list[str]):
    """The wire model, but a share of replies quotes a key (whole or in part), as a compromised proxy might."""
    def reply(body: dict) -> str:
        text = wire_reply(body)
        h = len(str(body.get("messages")))
        key = KEYS[shapes[h % len(shapes)]]
        return text + [f" (auth was {key})", f" [{key[1:13]}]", f" ...{key[-7:]}", ""][h % 4]
    return reply


@pytest.fixture
def planted(monkeypatch):
    for shape, name in ENV.items():
        monkeypatch.setenv(name, KEYS[shape])
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)


RUNS = {
    # forward on the sk- key, credit on the random one, optimizer on the short one: three keys in one run
    "local_openai, three roles, three keys": (
        ["openai sk-", "random 40-char", "short (7)"],
        lambda s: ["engine=local_openai", f"engine.base_url={s.openai_base_url}", "engine.model=local-test",
                   "engine.api_key_env=REL_OPENAI_KEY", "engines.credit.api_key_env=REL_GATEWAY_CRED",
                   "engines.optimizer.api_key_env=REL_SHORT_PASS", "task=gsm8k"]),
    "anthropic": (
        ["anthropic sk-ant-"],
        lambda s: ["engine=anthropic", f"+engine.base_url={s.anthropic_base_url}", "engine.api_key_env=REL_ANTHROPIC_KEY",
                   "task=bbh_object_counting"]),
}


@pytest.mark.parametrize("name", list(RUNS))
def test_keys_never_reach_a_file_the_console_or_an_error(server, tmp_path, planted, figures, name):
    shapes, overrides = RUNS[name]
    server.reply_fn = echoing(shapes)
    # The first replies are errors quoting the key (retried), then faults keep coming through the whole run.
    server.script(*[Status(500, message=f"upstream rejected credential {KEYS[s]}") for s in shapes],
                  Status(429, retry_after=0.01, message=f"slow down {KEYS[shapes[0]][:20]}"))
    proc = run_cli(tmp_path, *overrides(server), *COMMON, f"run_dir={tmp_path / 'run'}")
    assert proc.returncode == 0, proc.stderr[-2000:]
    sent = {r["headers"].get("authorization", "") + r["headers"].get("x-api-key", "") for r in server.requests}
    assert all(any(KEYS[s] in h for s in shapes) for h in sent)  # the planted keys really were the ones in use
    assert any(KEYS[s] in (r["reply"] or "") for r in server.requests for s in shapes)  # and were echoed back
    tree = scan_tree(tmp_path, shapes)
    console = leaks_in((proc.stdout + proc.stderr).encode(), shapes)
    figures.add("secrets", "scans", {"name": name, "shapes": shapes, "files": tree["files"], "bytes": tree["bytes"],
                                     "texts": 2, "leaks": len(tree["leaks"]) + len(console)})
    figures.add("isolation", "run_dirs", str(tmp_path / "run"))
    assert (tmp_path / "cache.sqlite").exists() and (tmp_path / "run" / "spans.jsonl").exists()
    assert console == [] and tree["leaks"] == [], (console, tree["leaks"])


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
def test_a_rejected_key_is_not_in_the_exception_or_its_traceback(server, tmp_path, planted, figures, provider):
    shapes = list(KEYS)
    base = server.openai_base_url if provider == "openai" else server.anthropic_base_url
    texts = []
    for shape in shapes:
        key = KEYS[shape]
        server.default = Status(401, message=f"invalid api key {key} (prefix {key[:12]}, tail {key[-8:]})")
        engine = build_engine({"provider": provider, "model": "m", "base_url": base, "api_key_env": ENV[shape],
                               "max_retries": 0, "cache": {"enabled": False}})
        try:
            engine.complete(LLMRequest.chat(f"hello {key[3:15]}"))
        except Exception as exc:  # noqa: BLE001 - any error type; its text is what is checked
            texts += [str(exc), repr(exc), "".join(traceback.format_exception(exc))]
        else:
            pytest.fail("a 401 must raise")
    server.default = Reply()
    leaked = leaks_in("\n".join(texts).encode(), shapes)
    figures.add("secrets", "scans", {"name": f"exceptions ({provider}, 401 echoing the key)", "shapes": shapes,
                                     "files": 0, "bytes": 0, "texts": len(texts), "leaks": len(leaked)})
    assert leaked == [], leaked
