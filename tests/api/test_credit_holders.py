"""The credit-holder hint (pure): refreshed when due, one read at a time, corrected by
what each ledger read shows."""

from __future__ import annotations

from api.credit_holders import CreditHolders


def test_a_refresh_is_due_at_first_then_after_the_interval_one_at_a_time() -> None:
    hint = CreditHolders(refresh_s=30.0)
    assert hint.due(100.0)
    assert not hint.due(100.0)  # one is running
    hint.refreshed(["acme", "globex"], 100.0)
    assert (hint.likely("acme"), hint.likely("initech")) == (True, False)
    assert not hint.due(129.9)
    assert hint.due(130.0)


def test_a_failed_refresh_keeps_the_hint_and_waits_the_interval() -> None:
    hint = CreditHolders(refresh_s=30.0)
    assert hint.due(0.0)
    hint.refreshed(["acme"], 0.0)
    assert hint.due(40.0)
    hint.failed(40.0)
    assert hint.likely("acme")
    assert not hint.due(69.0)
    assert hint.due(70.0)


def test_ledger_reads_correct_the_hint_both_ways() -> None:
    hint = CreditHolders()
    hint.refreshed(["acme"], 0.0)
    hint.learn("acme", False)
    hint.learn("initech", True)
    assert (hint.likely("acme"), hint.likely("initech")) == (False, True)
