"""Replay: a run recorded against a (local) real-provider endpoint replays offline from its cache with no provider
call and the same result; a request the recording never made is one clear error, and the run says `failed`."""
from __future__ import annotations

import json
import shutil

from runs_cli import records, run_cli
from wire_model import wire_reply

RUN = ("engine=local_openai", "engine.model=local-test", "trainer.max_steps=2", "trainer.val_size=4",
       "trainer.test_size=4", "trainer.progress=false")


def test_a_recorded_run_replays_with_no_provider_call_and_a_new_prompt_is_a_clear_error(server, tmp_path):
    server.reply_fn = wire_reply
    endpoint = f"engine.base_url={server.openai_base_url}"
    recorded = run_cli(tmp_path, *RUN, endpoint, f"run_dir={tmp_path / 'recorded'}")
    assert recorded.returncode == 0, recorded.stderr[-2000:]
    assert len(server.requests) > 0
    # Share only the cache file: the replay runs in another directory. The cache key covers the endpoint, so the
    # replay names the same base_url — and the server must not be reached.
    elsewhere = tmp_path / "elsewhere"
    (elsewhere / ".cache").mkdir(parents=True)
    shutil.copy(tmp_path / ".cache" / "requests.sqlite", elsewhere / ".cache" / "requests.sqlite")
    server.reset()
    replayed = run_cli(elsewhere, *RUN, endpoint, "engine.cache.mode=replay", f"run_dir={elsewhere / 'replayed'}")
    assert replayed.returncode == 0, replayed.stderr[-2000:]
    assert server.requests == []  # not one provider call
    first, again = (json.loads((d / "summary.json").read_text()) for d in (tmp_path / "recorded",
                                                                            elsewhere / "replayed"))
    assert again["parameters"] == first["parameters"] and again["val"] == first["val"] and again["test"] == first["test"]
    assert all(c["cache_hit"] for c in records(elsewhere / "replayed" / "calls.jsonl"))

    changed = run_cli(elsewhere, *RUN, endpoint, "engine.cache.mode=replay", "trainer.seed=5",
                      f"run_dir={elsewhere / 'changed'}")
    assert changed.returncode == 2 and "Traceback" not in changed.stderr and server.requests == []
    (line,) = changed.stderr.strip().splitlines()
    assert line.startswith("error:") and "replay" in line and "engine.cache.mode=readwrite" in line
    summary = json.loads((elsewhere / "changed" / "summary.json").read_text())
    assert summary["status"] == "failed" and summary["error"] and "replay" in summary["error"]
