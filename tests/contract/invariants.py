"""What must hold on every backend after any scenario: checked by :func:`assert_invariants`."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import fields

from eventbus.control import ControlPlane
from eventbus.deadletter import DeadReason
from eventbus.reports import QueueStats
from tests.apps import contract_control

_COUNTS = [f.name for f in fields(QueueStats) if f.type in ("int", int)]


def assert_invariants(cp: ControlPlane, runs: Mapping[str, int] | None = None) -> None:
    """No count in ``stats()`` is negative; every dead letter has a ``reason`` and ran ``attempts`` times.

    ``runs``: how many times each delivery ran, by ``"<subscription>|<event id>"``; by default what
    ``tests.apps.contract_control`` recorded.
    """
    runs = contract_control.runs() if runs is None else runs
    for queue in cp.stats().queues:
        negative = {name: getattr(queue, name) for name in _COUNTS if getattr(queue, name) < 0}
        assert not negative, f"queue {queue.queue}: negative counts {negative}"
    for letter in cp.dead_letters(limit=1000).items:
        assert isinstance(letter.reason, DeadReason), letter
        assert cp.get_dead_letter(letter.job_id).reason == letter.reason
        assert letter.to_dict()["reason"] == letter.reason.value
        key = f"{letter.subscription}|{letter.event_id}"
        assert letter.attempts == runs.get(key, 0), f"{key}: attempts {letter.attempts}, ran {runs.get(key, 0)} times"
