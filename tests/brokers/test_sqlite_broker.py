"""The SQLite broker on its own: priority, delays, once-keys, leases, ack/nack/requeue, pause, prefetch."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import dramatiq
import pytest
from dramatiq.encoder import JSONEncoder

from eventbus.brokers.sqlite.broker import SQLiteBroker
from eventbus.delivery import build_message
from tests.conftest import wait_for


@pytest.fixture(autouse=True)
def json_encoder() -> None:
    dramatiq.set_encoder(JSONEncoder())


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "bus.db"


@pytest.fixture
def broker(db: Path) -> Any:
    b = SQLiteBroker(db, lease_s=30)
    b.declare_queue("q")
    yield b
    b.close()


def msg(name: str, priority: str | None = None, queue: str = "q") -> dramatiq.Message[Any]:
    options = {"priority": priority} if priority else {}
    return build_message(queue, "job", {"name": name}, options, f"id-{name}")


def drain(consumer: Any, limit: int = 100) -> list[Any]:
    out = []
    while len(out) < limit:
        m = next(consumer)
        if m is None:
            return out
        out.append(m)
    return out


def test_fetch_takes_higher_priority_first_then_fifo(broker):
    # Given a backlog of mixed priorities
    names = [("l1", "low"), ("n1", None), ("c1", "critical"), ("h1", "high"), ("l2", "low"), ("c2", "critical")]
    broker.enqueue_many([msg(n, p) for n, p in names])
    # When a consumer drains the queue
    got = drain(broker.consume("q", prefetch=100, timeout=50))
    # Then critical comes first, then high, normal, low, FIFO within each level
    assert [m.kwargs["name"] for m in got] == ["c1", "c2", "h1", "n1", "l1", "l2"]


def test_a_delayed_message_is_not_handed_out_before_it_is_due(broker):
    # Given a message delayed by 400 ms
    [stored] = broker.enqueue_many([msg("later")], delay_ms=400)
    assert stored.queue_name == "q.DQ" and stored.options["eta"] > 0
    consumer = broker.consume("q", prefetch=10, timeout=100)
    # Then it is not handed out before the eta
    assert next(consumer) is None
    # When it falls due, the main consumer hands it out as a plain message of the queue
    deadline = time.monotonic() + 5
    got = None
    while got is None and time.monotonic() < deadline:
        got = next(consumer)
    assert got is not None and got.queue_name == "q" and "eta" not in got.options
    assert time.time() * 1000 >= stored.options["eta"]
    # And the .DQ consumer Dramatiq's worker starts never hands anything out
    assert next(broker.consume("q.DQ", prefetch=10, timeout=10)) is None


def test_once_keys_skip_duplicates_within_the_ttl_only(broker):
    # Given a message enqueued with a once-key
    assert len(broker.enqueue_many([msg("a")], once_keys=["k"], once_ttl_s=1)) == 1
    # When the same key comes again within the TTL, it is skipped; other keys are not
    out = broker.enqueue_many([msg("a"), msg("b")], once_keys=["k", "other"], once_ttl_s=1)
    assert [m.kwargs["name"] for m in out] == ["b"]
    assert broker.queue_size("q") == 2
    # And after the TTL the key is free again
    time.sleep(1.1)
    assert len(broker.enqueue_many([msg("a")], once_keys=["k"], once_ttl_s=1)) == 1


def test_an_unencodable_message_in_a_batch_writes_nothing(broker):
    bad = build_message("q", "job", {"x": object()}, {}, "bad")
    with pytest.raises(TypeError):
        broker.enqueue_many([msg("fine"), bad])
    assert broker.queue_size("q") == 0


def test_a_leased_message_is_invisible_until_its_lease_expires(db):
    # Given two processes (two brokers) on one file, with a short lease
    a, b = SQLiteBroker(db, lease_s=0.5), SQLiteBroker(db, lease_s=0.5)
    a.enqueue(msg("x"))
    # When A fetches the message and then stops renewing (as if it died)
    assert next(a.consume("q", prefetch=1, timeout=50)) is not None
    # Then B gets nothing while the lease holds, and the message once it has expired
    consumer_b = b.consume("q", prefetch=1, timeout=50)
    assert next(consumer_b) is None
    time.sleep(0.6)
    got = drain(b.consume("q", prefetch=1, timeout=500), 1)
    assert [m.kwargs["name"] for m in got] == ["x"]


def test_only_a_message_a_worker_held_before_is_careful_and_its_start_mark_is_stored_before_it_runs(db):
    # Given two processes (two brokers) on one file, with a short lease, and three messages
    a, b = SQLiteBroker(db, lease_s=0.5), SQLiteBroker(db, lease_s=0.5)
    a.enqueue_many([msg("fresh"), msg("held"), msg("marked")])
    # When A fetches them: none was held before
    got = drain(a.consume("q", prefetch=3, timeout=50), 3)
    assert [(m.kwargs["name"], m.careful) for m in got] == [("fresh", False), ("held", False), ("marked", False)]
    fresh, _, marked = got
    # A finishes "fresh", starts "marked" (a careful start: the mark is stored on return) and puts it back
    # unfinished, and stops renewing "held" (as if it died running it)
    consumer_a = a.consume("q", prefetch=3, timeout=50)
    consumer_a.ack(fresh)
    a.writes.mark_started(marked.row_id, wait=True)
    assert b.store.execute("SELECT row_id FROM message_runs") == [(marked.row_id,)]
    consumer_a.requeue([marked])
    # Then B, once the lease has run out, gets both back careful: its threads mark them before running
    time.sleep(0.6)
    again = drain(b.consume("q", prefetch=3, timeout=500), 2)
    assert sorted((m.kwargs["name"], m.careful) for m in again) == [("held", True), ("marked", True)]
    a.close()
    b.close()


def test_a_live_consumer_keeps_renewing_its_leases(db):
    a, b = SQLiteBroker(db, lease_s=0.4), SQLiteBroker(db, lease_s=0.4)
    a.enqueue(msg("x"))
    consumer_a = a.consume("q", prefetch=1, timeout=20)
    assert next(consumer_a) is not None
    consumer_b = b.consume("q", prefetch=1, timeout=20)
    # While A keeps polling (as its consumer thread does), the lease is renewed: B never sees it
    deadline = time.monotonic() + 1.5
    while time.monotonic() < deadline:
        assert next(consumer_a) is None
        assert next(consumer_b) is None


def test_ack_deletes_nack_dead_letters_with_details_requeue_returns(broker):
    broker.enqueue_many([msg("ok"), msg("bad"), msg("back")])
    consumer = broker.consume("q", prefetch=3, timeout=50)
    ok, bad, back = drain(consumer, 3)
    consumer.ack(ok)
    bad.options["retries"] = 3
    bad.stuff_exception(RuntimeError("boom"))
    consumer.nack(bad)
    consumer.requeue([back])
    # Then only the requeued message waits, visible again at once (the ack is written within ~2 ms)
    wait_for(lambda: broker.queue_size("q") == 1, 5)
    assert [m.kwargs["name"] for m in drain(consumer, 5)] == ["back"]
    # And the dead letter is the in-memory message with the final attempt's details
    [dead] = broker.dead_letters("q")
    assert dead.kwargs["name"] == "bad" and dead.options["retries"] == 3
    assert dead.options["error"] == "RuntimeError: boom" and dead.options["error_type"] == "RuntimeError"
    assert "boom" in dead.options["traceback"] and dead.options["dead_at"] > 0


def test_a_paused_queue_hands_out_nothing_until_resumed(broker):
    broker.pause("q")
    broker.enqueue(msg("x"))
    consumer = broker.consume("q", prefetch=5, timeout=50)
    assert next(consumer) is None
    assert broker.paused_queues() == {"q"}
    broker.resume("q")
    assert [m.kwargs["name"] for m in drain(consumer, 5)] == ["x"]


def test_prefetch_limits_what_a_consumer_holds(broker):
    broker.enqueue_many([msg(str(i)) for i in range(5)])
    consumer = broker.consume("q", prefetch=2, timeout=30)
    first = drain(consumer, 10)
    assert len(first) == 2
    consumer.ack(first[0])
    assert len(drain(consumer, 10)) == 1


def test_close_gives_back_fetched_messages_not_yet_handed_out(broker, db):
    broker.enqueue_many([msg(str(i)) for i in range(3)])
    consumer = broker.consume("q", prefetch=3, timeout=30)
    next(consumer)  # fetches 3, hands out 1
    consumer.close()
    other = SQLiteBroker(db).consume("q", prefetch=10, timeout=30)
    assert len(drain(other, 10)) == 2


def test_idle_next_returns_none_within_its_timeout_and_wakes_on_a_commit(broker, db):
    consumer = broker.consume("q", prefetch=5, timeout=2_000)
    publisher = SQLiteBroker(db)
    timer = threading.Timer(0.2, lambda: publisher.enqueue(msg("late")))
    timer.start()
    got = next(consumer)
    timer.join()
    assert got is not None and got.kwargs["name"] == "late"
    idle = broker.consume("q", prefetch=5, timeout=50)
    started = time.monotonic()
    assert next(idle) is None
    assert time.monotonic() - started < 1.0


def test_concurrent_consumers_on_one_file_never_share_a_message(db):
    # Given 600 messages and 3 "processes" x 2 consumers fetching at once
    SQLiteBroker(db).enqueue_many([msg(str(i)) for i in range(600)])
    brokers = [SQLiteBroker(db) for _ in range(3)]
    seen: list[str] = []
    lock = threading.Lock()

    def run(b: SQLiteBroker) -> None:
        consumer = b.consume("q", prefetch=8, timeout=200)
        while True:
            m = next(consumer)
            if m is None:
                return
            with lock:
                seen.append(m.kwargs["name"])
            consumer.ack(m)

    threads = [threading.Thread(target=run, args=(b,)) for b in brokers for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    # Then every message was handed out exactly once
    assert sorted(seen, key=int) == [str(i) for i in range(600)]


def test_a_worker_runs_retries_then_dead_letters(broker):
    # Given an actor that always fails, with 2 quick retries, run by an in-process Dramatiq worker
    calls = []

    def fails() -> None:
        calls.append(1)
        raise ValueError("nope")

    dramatiq.Actor(fails, broker=broker, actor_name="fails", queue_name="q", priority=0, options={})
    broker.enqueue(build_message("q", "fails", {}, {"max_retries": 2, "min_backoff": 10, "max_backoff": 20}, "f1"))
    worker = dramatiq.Worker(broker, worker_threads=2, worker_timeout=50)
    worker.start()
    try:
        broker.join("q", timeout=20_000)
    finally:
        worker.stop()
    # Then it ran 3 times and its dead letter carries the final attempt
    assert len(calls) == 3
    [dead] = broker.dead_letters("q")
    assert dead.options["retries"] == 3 and "nope" in dead.options["traceback"]
