"""Malformed and poison messages pushed straight into the broker are dead-lettered; valid work goes on."""

from __future__ import annotations

import json
import pickle
import time
import uuid
from pathlib import Path
from typing import Any

import dramatiq
import pytest

from eventbus import publish_event
from eventbus.brokers.malformed import MALFORMED, MALFORMED_ACTOR, raw_of
from tests.conftest import wait_for
from tests.faults.conftest import Rig
from tests.faults.table import report

pytestmark = [pytest.mark.slow]

QUEUE = "fault_a"
MAX_BYTES = 65_536


class OpensAFile:
    """Unpickling this creates ``path``: proof that somebody ran pickle.loads."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self) -> tuple[Any, ...]:
        return (open, (str(self.path), "w"))


def message_json(**overrides: Any) -> bytes:
    fields = {
        "queue_name": QUEUE,
        "actor_name": "eventbus.deliver",
        "args": [],
        "kwargs": {},
        "options": {},
        "message_id": str(uuid.uuid4()),
        "message_timestamp": int(time.time() * 1000),
    }
    return json.dumps({**fields, **overrides}).encode()


def bad_messages(marker: Path) -> dict[str, bytes]:
    return {
        "invalid json": b'{"queue_name": "fault_a", "actor_name": ',
        "pickle bytes": pickle.dumps(OpensAFile(marker)),
        "unknown actor": message_json(actor_name="no.such_actor"),
        "oversized body": message_json(kwargs={"blob": "x" * (MAX_BYTES + 1)}),
        "json, not an object": b"[1, 2, 3]",
        "mistyped field": message_json(options=["not", "a", "dict"]),
    }


def push_raw(rig: Rig, data: bytes) -> None:
    """Put bytes in the queue the way a foreign producer or a corrupted store would."""
    if rig.kind == "redis":
        client = rig.broker.client
        redis_id = str(uuid.uuid4())
        client.hset(rig.broker.key(f"{QUEUE}.msgs"), redis_id, data)
        client.rpush(rig.broker.key(QUEUE), redis_id)
    else:
        now = int(time.time() * 1000)
        rig.broker.store.execute(
            "INSERT INTO messages (queue, rank, visible_at, eta, enqueued_at, message_id, data) "
            "VALUES (?, 2, ?, 0, ?, ?, ?)",
            (QUEUE, now, now, str(uuid.uuid4()), data),
        )


def dead_letters(rig: Rig) -> list[dramatiq.Message[Any]]:
    if rig.kind == "redis":
        raw = rig.broker.client.hvals(rig.broker.key(f"{QUEUE}.XQ.msgs"))
        return [dramatiq.Message.decode(data) for data in raw]
    return list(rig.broker.dead_letters(QUEUE))


@pytest.mark.parametrize("kind", ["redis", "sqlite"])
def test_malformed_and_poison_messages_are_dead_lettered_and_valid_jobs_keep_flowing(rig, kind, tmp_path):
    # Given six unusable messages at the head of a queue (and a worker that allows 64 KiB messages)
    bus = rig(kind)
    marker = tmp_path / "unpickled.txt"
    bad = bad_messages(marker)
    for data in bad.values():
        push_raw(bus, data)
    # ... a poison event whose subscriber always fails, and 50 valid events behind them
    publish_event("fault.poison", {"n": 0})
    expected = bus.publish(50)
    # When a worker starts on that queue
    worker = bus.start_worker(threads=4, EVENTBUS_MAX_MESSAGE_BYTES=str(MAX_BYTES))
    bus.wait_done(expected, timeout_s=60)
    wait_for(lambda: len(dead_letters(bus)) >= len(bad) + 1, 30, worker)
    # Then every valid job ran once, and the worker is still up
    assert worker.proc.poll() is None
    # ... every unusable message is a dead letter with reason "malformed" and its raw bytes
    letters = dead_letters(bus)
    malformed = [m for m in letters if m.options.get("reason") == MALFORMED]
    assert len(malformed) == len(bad), [m.options.get("error") for m in letters]
    wrapped = [m for m in malformed if m.actor_name == MALFORMED_ACTOR]
    assert sorted(raw_of(m) for m in wrapped) == sorted(d[:65_536] for k, d in bad.items() if k != "unknown actor")
    errors = " | ".join(str(m.options["error"]) for m in malformed)
    assert "EVENTBUS_MAX_MESSAGE_BYTES=65536" in errors and "ActorNotFound" in errors
    # ... the poison event failed on its own (not malformed), with its error recorded
    poison = [m for m in letters if m.options.get("reason") != MALFORMED]
    assert len(poison) == 1 and "poison event" in poison[0].options["error"]
    # ... nothing was ever unpickled, and no consumer died on the way
    assert not marker.exists()
    log = worker.output()
    assert "Consumer encountered an unexpected error" not in log
    assert log.count("dead-lettered a malformed message") == len(bad) - 1  # the unknown actor is Dramatiq's path
    report(
        "malformed + poison messages at queue head",
        kind,
        bus.ledger.count(expected),
        note=f"{len(bad)} malformed + 1 poison dead-lettered",
    )
