"""Budget and price truth: a cost budget needs every model priced (or an explicit allow_unpriced), budgets are
never negative, the simulator is free rather than unpriced, and an unpriced cost is labelled, not shown as $0."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from textgrad_core.engines import BudgetConfig, EngineSet, Ledger, LLMRequest, PriceTable, UsageTotals
from textgrad_core.engines.config import parse_budget_config
from textgrad_core.engines.types import Usage
from textgrad_core.errors import ConfigError

try:
    from provider_server import Reply
except ImportError:  # tests/ imported as a package
    from tests.provider_server import Reply


@pytest.fixture(autouse=True)
def api_keys(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "-".join(["sk", "Mz4Qr8Tw2Yx6Bd"]))


def openai_cfg(server, model, **extra):
    return dict(provider="openai", model=model, base_url=server.openai_base_url, max_retries=0,
                cache={"enabled": False}, **extra)


def test_cost_budget_with_an_unpriced_model_is_refused_before_any_call(server):
    ledger = Ledger(budget=BudgetConfig(max_cost_usd=0.0001))
    with pytest.raises(ConfigError) as info:
        EngineSet({"forward": openai_cfg(server, "gpt-4o-mini"), "optimizer": openai_cfg(server, "gpt-9-unpriced")},
                  ledger=ledger)
    message = str(info.value)
    assert "gpt-9-unpriced" in message and "engines.optimizer" in message and "\n" not in message
    assert "pricing.gpt-9-unpriced.input" in message and "pricing.gpt-9-unpriced.output" in message
    assert "budget.allow_unpriced=true" in message
    assert server.requests == []


def test_pricing_extension_and_dated_names_satisfy_a_cost_budget(server):
    budget = BudgetConfig(max_cost_usd=1.0)
    EngineSet({"forward": openai_cfg(server, "gpt-9-unpriced")},
              ledger=Ledger(budget=budget, prices=PriceTable({"gpt-9-unpriced": {"input": 1.0, "output": 2.0}})))
    EngineSet({"forward": openai_cfg(server, "gpt-4o-mini-2024-07-18")}, ledger=Ledger(budget=budget))
    # no cost budget: an unpriced model is allowed, and labelled later
    EngineSet({"forward": openai_cfg(server, "gpt-9-unpriced")}, ledger=Ledger(budget=BudgetConfig(max_calls=3)))


def test_allow_unpriced_runs_and_the_cost_is_labelled_unpriced(server):
    server.script(Reply("a", input_tokens=1000, output_tokens=100))
    ledger = Ledger(budget=BudgetConfig(max_cost_usd=0.0001, allow_unpriced=True))
    engines = EngineSet({"forward": openai_cfg(server, "gpt-9-unpriced")}, ledger=ledger)
    reply = engines["forward"].complete(LLMRequest.chat("hi"))
    assert reply.unpriced and reply.cost_usd == 0.0
    total = ledger.total()
    assert total.unpriced and total.unpriced_calls == 1
    assert ledger.cost_label() == "unpriced" and total.cost_label() == "unpriced"
    assert ledger.unpriced_models() == ["gpt-9-unpriced"]


def test_partly_priced_runs_say_so():
    totals = UsageTotals(cost_usd=0.0123, unpriced_calls=2)
    assert totals.cost_label() == "$0.0123 + unpriced"
    assert UsageTotals(cost_usd=0.0123).cost_label() == "$0.0123"
    assert UsageTotals().cost_label() == "$0.0000"
    assert totals.minus(UsageTotals(unpriced_calls=2)).cost_label() == "$0.0123"


def test_simulator_and_scripted_engines_are_free_not_unpriced(tmp_path):
    ledger = Ledger(budget=BudgetConfig(max_cost_usd=0.01))
    engines = EngineSet({"forward": {"provider": "sim", "model": "sim-unknown-name", "cache": {"enabled": False}},
                         "optimizer": {"provider": "scripted", "model": "whatever"}}, ledger=ledger)
    reply = engines["forward"].complete(LLMRequest.chat("hi", tag="forward:x"))
    assert reply.cost_usd == 0.0 and not reply.unpriced
    assert ledger.cost_label() == "$0.0000" and ledger.unpriced_models() == []


def test_reply_under_an_unknown_snapshot_name_is_priced_by_the_configured_model():
    prices = PriceTable()
    usage = Usage(input_tokens=1_000_000, output_tokens=0)
    assert prices.cost("openai", "vendor-alias-7", usage, requested="gpt-4o-mini") == pytest.approx(0.15)
    assert prices.unpriced == set()
    assert prices.is_priced("sim", "anything") and not prices.is_priced("openai", "vendor-alias-7")


@pytest.mark.parametrize("key", ["max_cost_usd", "max_tokens", "max_calls"])
def test_negative_budgets_are_rejected_with_one_line(key):
    with pytest.raises(ConfigError) as info:
        parse_budget_config({key: -3})
    assert f"budget.{key}=-3" in str(info.value) and ">= 0" in str(info.value) and "\n" not in str(info.value)
    assert parse_budget_config({key: 0}).model_dump()[key] == 0


def test_unknown_budget_key_names_the_known_ones():
    with pytest.raises(ConfigError, match=r"budget\.max_cost\b.*budget\.max_cost_usd"):
        parse_budget_config({"max_cost": 1})
