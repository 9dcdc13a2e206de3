"""Estimate what a run costs before a cent is spent: `python -m experiments.estimate experiment=repro/<name> [overrides]`.

The run is dry-run on the offline simulator: the same composed config, with every role's engine swapped to
provider=sim but keeping its model name, so the trainer makes exactly the calls of the real run's structure (steps,
minibatches, credit edges, validation and test passes, cache hits within the run). Each call is then priced with its
role's configured model: prompt tokens by the model's tokenizer where one ships offline (experiments.estimate_tokens;
else characters / 4, stated), completion tokens as a range — the simulator's reply (a short stand-in) for the low end,
the call's max_tokens for the high end. The figures are per phase and per role.

What it cannot know: a real model's replies are longer than the simulator's, and replies feed later prompts (credit
sees the forward output), so prompts of a real run are somewhat longer; how many steps a real run accepts changes
nothing in the call count of a plain run, but a search's branches follow its scores.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import sys
import tempfile
from pathlib import Path
from typing import Any, Iterator

from pydantic import BaseModel, Field

from experiments.estimate_target import TargetSection, parse_target
from experiments.estimate_tokens import TokenCounter
from experiments.factory import plug_in_overrides, role_configs
from textgrad_core.engines import ENGINE_ROLES, PriceTable
from textgrad_core.engines import sim as sim_engine
from textgrad_core.errors import ConfigError, TextgradError

CONFIG_DIR = Path(__file__).resolve().parents[1] / "configs"
_ROLE_DEFAULTS = {"judge": "credit", "eval": "forward"}  # as textgrad_core.engines.EngineSet resolves them


class CostLine(BaseModel):
    """Calls, tokens and the cost range of a set of calls (a phase, a role, or all)."""

    calls: int = 0
    cache_hits: int = 0              # served by the run's own cache: no tokens, no cost
    input_tokens: int = 0
    output_tokens_low: int = 0       # the simulator's replies
    output_tokens_high: int = 0      # every call's max_tokens
    cost_low_usd: float = 0.0
    cost_high_usd: float = 0.0
    unpriced_calls: int = 0          # calls to a model without a price (cost_* leave them out)

    def add(self, other: "CostLine") -> None:
        for name in CostLine.model_fields:
            setattr(self, name, getattr(self, name) + getattr(other, name))


class Estimate(BaseModel):
    """The priced dry run of one config."""

    overrides: list[str]
    target: TargetSection | None = None
    models: dict[str, str]                      # role -> provider/model priced
    tokenizers: dict[str, str]                  # model -> cl100k_base | o200k_base | characters/4
    steps: int
    status: str                                 # the dry run's status (completed, or why it stopped)
    by_phase: dict[str, CostLine] = Field(default_factory=dict)
    by_role: dict[str, CostLine] = Field(default_factory=dict)
    total: CostLine = Field(default_factory=CostLine)


def compose(overrides: list[str]) -> dict[str, Any]:
    """The resolved config the command line `python -m experiments.run <overrides>` would run."""
    from hydra import compose as hydra_compose, initialize_config_dir
    from hydra.errors import HydraException
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    try:
        with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
            cfg = hydra_compose("config", overrides=plug_in_overrides(list(overrides)))
        return OmegaConf.to_container(cfg, resolve=True)
    except (HydraException, OmegaConfBaseException) as exc:
        first = " ".join(str(exc).split("\n")[0].split())
        raise ConfigError(f"cannot compose the config from {' '.join(overrides) or 'no overrides'}: {first}") from exc


def priced_roles(plain: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Every role's engine config as the real run resolves it (judge from credit, eval from forward)."""
    configs = role_configs(plain)
    out: dict[str, dict[str, Any]] = {}
    for role in ENGINE_ROLES:
        out[role] = configs.get(role) or configs.get(_ROLE_DEFAULTS.get(role, "forward")) or configs["forward"]
    return out


def simulated_config(plain: dict[str, Any], workdir: Path) -> dict[str, Any]:
    """The same config with every role on the simulator under its own model name, writing only into `workdir`."""
    sim = dict(plain)
    roles = priced_roles(plain)
    engines = {}
    for role, cfg in roles.items():
        cache = dict(cfg.get("cache") or {})
        engines[role] = {
            "provider": "sim", "model": cfg.get("model") or "sim-1",
            "max_concurrency": cfg.get("max_concurrency") or 16,
            # A fresh cache (when the run's has one): hits within the run are free in the real run too, while the
            # user's cache is neither read nor written.
            "cache": {"enabled": bool(cache.get("enabled", True)) and cache.get("mode") != "off", "mode": "readwrite",
                      "path": str(workdir / "cache.sqlite"), "namespace": "estimate"},
            "options": {"seed": 0},
        }
    sim["engine"] = engines["forward"]
    sim["engines"] = {role: engines[role] for role in ENGINE_ROLES if role != "forward"}
    sim["trainer"] = {**plain["trainer"], "progress": False}
    sim["budget"] = {}   # the estimate is of the whole run; the budget stops a real run where it says
    sim["run_dir"] = str(workdir / "run")
    sim["resume"] = None
    for key, off in (("telemetry", {"otlp_endpoint": None}), ("mlflow", {"tracking_uri": None})):
        if isinstance(sim.get(key), dict):
            sim[key] = {**sim[key], **off}  # a dry run exports nothing
    sim.pop("target", None)  # bookkeeping of the repro file, read above
    return sim


def request_key(tag: str, messages: list[dict[str, Any]], temperature: float, sample_index: int, model: str) -> str:
    """What identifies one call across the call log and the simulator (the log does not record max_tokens)."""
    payload = json.dumps([tag, messages, temperature, sample_index, model], sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


@contextlib.contextmanager
def _recording_simulator(max_tokens: dict[str, int]) -> Iterator[None]:
    """The simulator backend, recording each request's max_tokens (the call log does not carry it).

    The dry run builds its engines through the registry of providers, which imports SimBackend by name at build
    time; a subclass stands in for it for the duration of the dry run only.
    """
    original = sim_engine.SimBackend

    class RecordingSim(original):  # type: ignore[misc, valid-type]
        async def send(self, request, model, timeout):  # noqa: ANN001 (the Backend protocol's signature)
            messages = [m.model_dump() for m in request.messages]
            key = request_key(request.tag, messages, request.temperature, request.sample_index, model)
            max_tokens[key] = max(max_tokens.get(key, 0), request.max_tokens)
            return await super().send(request, model, timeout)

    sim_engine.SimBackend = RecordingSim
    try:
        yield
    finally:
        sim_engine.SimBackend = original


def price_calls(records: list[dict[str, Any]], roles: dict[str, dict[str, Any]], prices: PriceTable,
                max_tokens: dict[str, int]) -> tuple[dict[str, CostLine], dict[str, CostLine], CostLine]:
    """Cost lines per phase, per role and in total for the call records of a dry run."""
    counters: dict[str, TokenCounter] = {}
    by_phase: dict[str, CostLine] = {}
    by_role: dict[str, CostLine] = {}
    total = CostLine()
    for record in records:
        if record.get("kind") != "llm_call" or record.get("error"):
            continue
        role = record.get("role") or "forward"
        model = roles.get(role, roles["forward"]).get("model") or record["model"]
        line = CostLine(calls=1)
        if record.get("cache_hit"):
            line.cache_hits = 1
        else:
            counter = counters.setdefault(model, TokenCounter(model))
            line.input_tokens = counter.messages(record["messages"])
            line.output_tokens_low = counter.text(record.get("reply") or "")
            key = request_key(record.get("tag", ""), record["messages"], record.get("temperature", 0.0),
                              record.get("sample_index", 0), record["model"])
            line.output_tokens_high = max(max_tokens.get(key, 0), line.output_tokens_low)
            price = prices.lookup(model)
            if price is None:
                line.unpriced_calls = 1
            else:
                line.cost_low_usd = (line.input_tokens * price.input + line.output_tokens_low * price.output) / 1e6
                line.cost_high_usd = (line.input_tokens * price.input + line.output_tokens_high * price.output) / 1e6
        by_phase.setdefault(record.get("phase") or "other", CostLine()).add(line)
        by_role.setdefault(role, CostLine()).add(line)
        total.add(line)
    return dict(sorted(by_phase.items())), dict(sorted(by_role.items())), total


def estimate(overrides: list[str], workdir: str | Path | None = None) -> Estimate:
    """Dry-run the config of `overrides` on the simulator and price its calls with the configured models.

    `workdir` keeps the dry run's directory (its call log) for inspection; by default a temporary one is removed.
    """
    from experiments.run import run_experiment

    plain = compose(overrides)
    target = parse_target(plain.get("target"))
    roles = priced_roles(plain)
    prices = PriceTable(dict(plain.get("pricing") or {}))
    with contextlib.ExitStack() as stack:
        base = Path(workdir) if workdir is not None else Path(stack.enter_context(tempfile.TemporaryDirectory()))
        base.mkdir(parents=True, exist_ok=True)
        max_tokens: dict[str, int] = {}
        with _recording_simulator(max_tokens):
            summary = run_experiment(simulated_config(plain, base))
        if summary.get("status") == "failed":
            raise TextgradError(f"the dry run failed: {summary.get('error')}")
        calls_path = Path(summary["run_dir"]) / "calls.jsonl"
        records = [json.loads(line) for line in calls_path.read_text(encoding="utf-8").splitlines() if line.strip()]
    by_phase, by_role, total = price_calls(records, roles, prices, max_tokens)
    models = {role: f"{cfg.get('provider')}/{cfg.get('model')}" for role, cfg in roles.items()}
    tokenizers = {cfg.get("model"): TokenCounter(cfg.get("model") or "").method for cfg in roles.values()}
    return Estimate(overrides=list(overrides), target=target, models=models, tokenizers=tokenizers,
                    steps=int(summary.get("steps") or 0), status=str(summary.get("status")), by_phase=by_phase,
                    by_role=by_role, total=total)


def render(est: Estimate) -> str:
    """The estimate as plain text: the target, then per phase and per role, then the total."""
    lines = [f"estimate for: python -m experiments.run {' '.join(est.overrides)}".rstrip()]
    if est.target is not None:
        t = est.target
        lines.append(f"target: {t.paper}; {t.table}: {t.number} ({t.metric}); protocol {t.protocol}")
    lines.append("models: " + ", ".join(f"{r}={m}" for r, m in est.models.items()))
    lines.append("tokens counted by: " + ", ".join(f"{m}={how}" for m, how in est.tokenizers.items()))
    lines.append(f"dry run on the simulator: {est.steps} steps, status {est.status}")
    header = f"{'':>12} {'calls':>7} {'cached':>7} {'input tok':>11} {'output tok (sim..max)':>23} {'cost USD (low..high)':>22}"

    def row(name: str, c: CostLine) -> str:
        out = f"{c.output_tokens_low}..{c.output_tokens_high}"
        cost = f"{c.cost_low_usd:.4f}..{c.cost_high_usd:.4f}" + (" +unpriced" if c.unpriced_calls else "")
        return f"{name:>12} {c.calls:>7} {c.cache_hits:>7} {c.input_tokens:>11} {out:>23} {cost:>22}"

    for title, table in (("by phase", est.by_phase), ("by role", est.by_role)):
        lines += ["", title, header] + [row(k, v) for k, v in table.items()]
    lines += ["", row("total", est.total)]
    if est.total.unpriced_calls:
        lines.append(f"{est.total.unpriced_calls} calls go to models without a price: set pricing.<model>.input/output")
    lines.append("low: the simulator's (short) replies as completions; high: every call's max_tokens. Real replies "
                 "are longer than the simulator's and feed later prompts, so expect the upper part of the range.")
    return "\n".join(lines)


def cli(argv: list[str]) -> int:
    """`python -m experiments.estimate [--json] <hydra overrides>`: print the estimate; a user error is one line, exit 2."""
    as_json = "--json" in argv
    overrides = [a for a in argv if a != "--json"]
    if any(a in ("-m", "--multirun") for a in overrides):
        print("error: estimate one job at a time (drop -m and give the job's overrides)", file=sys.stderr)
        return 2
    try:
        est = estimate(overrides)
    except TextgradError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(est.model_dump_json(indent=1) if as_json else render(est))
    return 0


if __name__ == "__main__":
    sys.exit(cli(sys.argv[1:]))
