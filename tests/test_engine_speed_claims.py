"""Processes sharing one cache file pay once for a prompt another has in flight (claim rows in the cache), tested
with two real processes against the local provider server; dead owners' and expired claims are taken over."""
from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from textgrad_core.engines import LLMRequest, build_engine
from textgrad_core.engines.cache import RequestCache, claim_owner

try:
    from provider_server import Reply, Status
except ImportError:  # tests/ imported as a package
    from tests.provider_server import Reply, Status

PROMPTS = 200

# One sweep member: waits at a barrier so both processes send the same prompts at the same time.
CHILD = r"""
import asyncio, json, sys, time
from pathlib import Path
from textgrad_core.engines import LLMRequest, build_engine
url, cache_path, ready, go, out, n = sys.argv[1:7]
engine = build_engine(dict(provider="openai", model="gpt-4o-mini", base_url=url, max_concurrency=8, timeout=10.0,
                           max_retries=1, backoff_max=1.0, cache={"path": cache_path}))
Path(ready).write_text("ready")
for _ in range(3000):  # at most 30 s
    if Path(go).exists():
        break
    time.sleep(0.01)
async def main():
    replies = await asyncio.gather(*(engine.acomplete(LLMRequest.chat(f"prompt {i}")) for i in range(int(n))))
    return {"texts": [r.text for r in replies], "hits": sum(r.cache_hit for r in replies)}
Path(out).write_text(json.dumps(asyncio.run(main())))
"""


def engine_cfg(server, tmp_path, **overrides):
    cfg = dict(provider="openai", model="gpt-4o-mini", base_url=server.openai_base_url, timeout=5.0, max_retries=1,
               backoff_base=0.01, backoff_max=1.0, cache={"path": str(tmp_path / "shared.sqlite")})
    cfg.update(overrides)
    return cfg


def test_two_processes_sharing_a_cache_file_pay_once_per_prompt(server, tmp_path):
    server.default = Reply(delay=0.05)
    go = tmp_path / "go"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OPENAI_API_KEY": "not-a-key"}
    procs = []
    for i in range(2):
        args = [sys.executable, "-c", CHILD, server.openai_base_url, str(tmp_path / "shared.sqlite"),
                str(tmp_path / f"ready{i}"), str(go), str(tmp_path / f"out{i}.json"), str(PROMPTS)]
        procs.append(subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    try:
        for _ in range(6000):  # both imported and built their engine (bounded: 60 s)
            if all((tmp_path / f"ready{i}").exists() for i in range(2)) or any(p.poll() is not None for p in procs):
                break
            time.sleep(0.01)
        go.write_text("go")
        results = [p.communicate(timeout=120) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    for p, (_, err) in zip(procs, results):
        assert p.returncode == 0, err[-2000:]
    outs = [json.loads((tmp_path / f"out{i}.json").read_text()) for i in range(2)]
    # 200 distinct prompts sent by both: each answered (paid) once (was 400). A request the loaded machine cut off
    # before its reply (and the client retried) was never answered, so it is not counted as paid.
    answered = server.answered()
    assert len(answered) == PROMPTS, server.outcomes()
    assert sorted(r["json"]["messages"][-1]["content"] for r in answered) == \
        sorted(f"prompt {i}" for i in range(PROMPTS))
    assert outs[0]["texts"] == outs[1]["texts"] == [f"echo: prompt {i}" for i in range(PROMPTS)]
    assert outs[0]["hits"] + outs[1]["hits"] == PROMPTS  # what one paid for, the other got from the cache
    cache = RequestCache(tmp_path / "shared.sqlite")
    assert len(cache) == PROMPTS and cache.open_claims() == 0  # every claim released once its reply was stored
    cache.close()


def plant_claim(path: Path, engine, prompt: str, owner: str, expires_in: float) -> None:
    """A claim on `prompt`'s key as another process would have left it."""
    cache = RequestCache(path)
    key = engine.cache_key(LLMRequest.chat(prompt))
    cache._db.execute("INSERT OR REPLACE INTO claims(namespace, key, owner, expires) VALUES (?, ?, ?, ?)",
                      (cache.namespace, key, owner, time.time() + expires_in))
    cache.close()


def dead_pid() -> int:
    """A pid that no process of this host has now."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_a_dead_owners_claim_is_taken_over_at_once(server, tmp_path):
    engine = build_engine(engine_cfg(server, tmp_path))
    host = claim_owner().split(":")[0]
    plant_claim(tmp_path / "shared.sqlite", engine, "orphan", f"{host}:{dead_pid()}:feedfeedfeed", expires_in=3600)
    reply = engine.complete(LLMRequest.chat("orphan"))
    assert reply.text == "echo: orphan" and not reply.cache_hit and len(server.requests) == 1
    assert engine.cache.open_claims() == 0


def test_a_live_foreign_claim_is_waited_for_until_it_expires(server, tmp_path):
    engine = build_engine(engine_cfg(server, tmp_path))
    # Another host's owner: alive as far as we can tell, so we wait, but only until its claim expires.
    plant_claim(tmp_path / "shared.sqlite", engine, "slow owner", "elsewhere:4242:cafecafecafe", expires_in=0.3)
    reply = engine.complete(LLMRequest.chat("slow owner"))
    assert reply.text == "echo: slow owner" and len(server.requests) == 1


def test_a_live_foreign_claim_whose_reply_arrives_is_served_from_the_cache(server, tmp_path):
    engine = build_engine(engine_cfg(server, tmp_path))
    other = build_engine(engine_cfg(server, tmp_path, model="gpt-4o-mini"))
    plant_claim(tmp_path / "shared.sqlite", engine, "in flight elsewhere", "elsewhere:4242:cafecafecafe", 3600)

    async def main():
        waiting = asyncio.ensure_future(engine.acomplete(LLMRequest.chat("in flight elsewhere")))
        await asyncio.sleep(0.05)
        assert not waiting.done()  # it waits for the owner instead of paying
        stored = other.backend  # the "owner" answers: its reply row appears in the shared file
        reply = await stored.send(LLMRequest.chat("in flight elsewhere"), "gpt-4o-mini", 5.0)
        other.cache.put(engine.cache_key(LLMRequest.chat("in flight elsewhere")), reply)
        return await asyncio.wait_for(waiting, timeout=30)

    reply = asyncio.run(main())
    assert reply.cache_hit and reply.text == "echo: in flight elsewhere"
    assert len(server.requests) == 1  # the owner's request only


def test_a_failed_call_releases_its_claim(server, tmp_path):
    engine = build_engine(engine_cfg(server, tmp_path, max_retries=0))
    server.script(Status(400))
    with pytest.raises(Exception):
        engine.complete(LLMRequest.chat("bad request"))
    assert engine.cache.open_claims() == 0


# Opens a fresh cache file the moment the go file appears, so several processes race on its first WAL switch.
OPENER = r"""
import sys, time
from pathlib import Path
from textgrad_core.engines.cache import RequestCache
from textgrad_core.engines import LLMReply
cache_path, go, i = sys.argv[1:4]
Path(f"{go}.ready{i}").write_text("ready")
for _ in range(30000):  # at most 30 s
    if Path(go).exists():
        break
    time.sleep(0.001)
RequestCache(cache_path).put(f"key {i}", LLMReply(text=f"reply {i}", model="m", provider="openai"))
"""


def test_processes_opening_a_fresh_cache_file_at_once_all_get_it(tmp_path):
    """A sweep's members open the shared cache together; the first WAL switch once made some of them fail with
    'database is locked' (5 of 160 opens, 20 rounds of 8). Every opener must get the cache and keep its entry."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    for trial in range(10):
        path, go = tmp_path / f"fresh{trial}.sqlite", tmp_path / f"go{trial}"
        procs = [subprocess.Popen([sys.executable, "-c", OPENER, str(path), str(go), str(i)], env=env,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for i in range(8)]
        for _ in range(3000):  # all imported and waiting at the barrier (bounded: 30 s)
            if all(Path(f"{go}.ready{i}").exists() for i in range(8)) or any(p.poll() is not None for p in procs):
                break
            time.sleep(0.01)
        go.write_text("go")
        results = [p.communicate(timeout=90) for p in procs]
        for p, (_, err) in zip(procs, results):
            assert p.returncode == 0, err[-1500:]
        cache = RequestCache(path)
        assert sorted(cache.get(f"key {i}").text for i in range(8)) == sorted(f"reply {i}" for i in range(8))
