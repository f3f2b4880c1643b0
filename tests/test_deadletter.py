"""Every dead letter has a reason and the number of times its message ran, however it died."""

from __future__ import annotations

import dramatiq
from dramatiq.errors import ActorNotFound
from dramatiq.middleware import SkipMessage

from eventbus.brokers.malformed import dead_letter
from eventbus.brokers.poison import worker_lost
from eventbus.control.deadletters import to_dead_letter
from eventbus.deadletter import DeadReason, nacked_options, reason_of


def message(**options: object) -> dramatiq.Message[object]:
    return dramatiq.Message(
        queue_name="q", actor_name="a", args=(), kwargs={}, options=dict(options), message_id="J1", message_timestamp=1
    )


def test_a_message_that_ran_out_of_retries_is_failed_after_the_runs_it_had():
    # Given a message that failed its third run (Dramatiq's Retries counted 3; the ledger stored attempt 3)
    try:
        raise RuntimeError("boom")
    except RuntimeError as exc:
        error = exc
    # When a worker nacks it, with and without the ledger's count
    with_ledger = nacked_options({"retries": 3, "attempts": 3}, error, 5)
    without = nacked_options({"retries": 3}, error, 5)
    # Then both say failed, 3 attempts, with the error and a traceback
    for options in (with_ledger, without):
        assert (options["reason"], options["attempts"], options["dead_at"]) == ("failed", 3, 5)
        assert options["error"] == "RuntimeError: boom" and options["error_type"] == "RuntimeError"
        assert "RuntimeError: boom" in options["traceback"]


def test_an_unknown_actor_is_malformed_and_a_message_past_its_age_is_expired():
    assert nacked_options({}, ActorNotFound("x"))["reason"] == DeadReason.MALFORMED
    assert nacked_options({}, ActorNotFound("x"))["attempts"] == 0
    expired = nacked_options({"retries": 1}, SkipMessage("Message age limit exceeded"))
    assert (expired["reason"], expired["attempts"]) == (DeadReason.EXPIRED, 1)


def test_a_poison_message_counts_the_runs_that_killed_its_worker():
    # Given a message that failed once (retries=1), then killed its worker 3 times
    dead = worker_lost(message(retries=1), 3, now_ms=7)
    # Then its dead letter is worker_lost after 4 runs
    letter = to_dead_letter("q", 7, dead.encode())
    assert (letter.reason, letter.attempts, letter.error_type) == (DeadReason.WORKER_LOST, 4, "WorkerLost")
    assert letter.to_dict()["reason"] == "worker_lost" and "died 3 times" in (letter.error or "")


def test_a_malformed_letter_never_ran():
    letter = to_dead_letter("q", 1, dead_letter(b"\x80not json", "q", "bad bytes").encode())
    assert (letter.reason, letter.attempts) == (DeadReason.MALFORMED, 0)


def test_letters_stored_before_reasons_get_one_derived():
    # Given dead letters as older versions stored them (no reason, or "dead_reason"; no attempts)
    old_poison = message(dead_reason="worker_lost", error_type="WorkerLost", lost_deliveries=3)
    lost_only = message(error_type="WorkerLost", lost_deliveries=3)
    old_failed = message(retries=3, error="RuntimeError: x", error_type="RuntimeError")
    unknown = message(reason="gone_fishing", error_type="ValueError")
    # Then each letter has a reason and its runs
    assert [(d.reason, d.attempts) for d in (to_dead_letter("q", 1, m.encode()) for m in (old_poison, lost_only))] == [
        (DeadReason.WORKER_LOST, 3),
        (DeadReason.WORKER_LOST, 3),
    ]
    assert (
        to_dead_letter("q", 1, old_failed.encode()).reason,
        to_dead_letter("q", 1, old_failed.encode()).attempts,
    ) == (
        DeadReason.FAILED,
        3,
    )
    assert reason_of(unknown.options) == DeadReason.FAILED
    assert reason_of({"error_type": "MalformedMessage"}) == DeadReason.MALFORMED
    # And an undecodable stored letter is listed as malformed, so it can still be purged
    assert to_dead_letter("q", 1, b"{not json").reason == DeadReason.MALFORMED
