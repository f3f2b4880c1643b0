"""A store test written once fails on a backend that breaks the contract.

Each test double below is the memory backend with one rule broken; the contract tests written for
every backend, run unchanged against it, fail.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

import pytest

from eventbus.brokers.memory.control import MemoryControlStore
from eventbus.control import ControlPlane
from eventbus.reports import Stats
from tests.apps import contract_control as app
from tests.contract import test_control_contract as contract


class UndercountsDelayed(MemoryControlStore):
    """Breaks "stats count every scheduled message as delayed": one fewer per queue."""

    def stats(self, local_queues: Sequence[str]) -> Stats:
        stats = super().stats(local_queues)
        return replace(stats, queues=[replace(q, delayed=q.delayed - 1) for q in stats.queues])


class ForgetsRequeuedLetters(MemoryControlStore):
    """Breaks "a requeued dead letter runs again": taking letters out returns nothing to requeue."""

    def take_dead(self, queue: str, broker_ids: Sequence[str]) -> list[bytes]:
        super().take_dead(queue, broker_ids)
        return []


def plane_with(contract_bus, store_class: type[MemoryControlStore]) -> ControlPlane:
    contract_bus.broker.control_store = store_class(contract_bus.broker)
    return ControlPlane(contract_bus.broker, contract_bus.settings)


@pytest.mark.parametrize("contract_bus", ["memory"], indirect=True)
def test_the_delayed_count_test_passes_on_the_real_store(contract_bus):
    # Given the memory backend as it is, When the contract test runs, Then it passes
    app.reset()
    contract.test_scheduled_events_count_as_delayed_until_they_are_due(
        contract_bus, plane_with(contract_bus, MemoryControlStore)
    )


@pytest.mark.parametrize("contract_bus", ["memory"], indirect=True)
def test_a_store_that_undercounts_delayed_jobs_fails_the_contract(contract_bus):
    # Given a store whose stats count one scheduled message fewer than it holds
    app.reset()
    cp = plane_with(contract_bus, UndercountsDelayed)
    # When the contract test for delayed counts runs on it, Then it fails
    with pytest.raises(AssertionError):
        contract.test_scheduled_events_count_as_delayed_until_they_are_due(contract_bus, cp)


@pytest.mark.parametrize("contract_bus", ["memory"], indirect=True)
def test_a_store_that_loses_requeued_letters_fails_the_contract(contract_bus):
    # Given a store that drops the dead letters it takes out for a requeue
    app.reset()
    cp = plane_with(contract_bus, ForgetsRequeuedLetters)
    # When the dead-letter contract test runs on it, Then it fails
    with pytest.raises(AssertionError):
        contract.test_stats_dead_letters_and_a_requeue_that_runs_each_letter_once(contract_bus, cp)
    app.reset()
