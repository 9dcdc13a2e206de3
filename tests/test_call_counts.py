"""The call-count formulas of docs/credit.md hold on 1-, 3- and 6-stage pipelines (scripted engine)."""
import pytest

from benchmarks.credit_calls import measure

B = 3  # batch size


def formula(credit: str, optimizer: str, n: int) -> tuple[int, int]:
    """(credit calls, optimizer calls) per step for an n-stage chain with one instruction per stage."""
    credit_calls = B * (2 * n - 1) if credit in ("backprop", "semantic") else 0
    optimizer_calls = 1 if optimizer == "joint" else n
    return credit_calls, optimizer_calls


@pytest.mark.parametrize("n", [1, 3, 6])
@pytest.mark.parametrize("credit,optimizer", [("backprop", "tgd"), ("semantic", "tgd"), ("trace", "tgd"),
                                              ("trace", "joint"), ("outcome", "tgd"), ("adaptive", "joint"),
                                              ("outcome", "opro")])
def test_measured_calls_match_the_formula(credit, optimizer, n):
    measured = measure(credit, optimizer, n, B)
    assert (measured["credit"], measured["optimizer"]) == formula(credit, optimizer, n)
