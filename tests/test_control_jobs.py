"""Jobs, dead letters, clean-up and retention through the control plane and its CLI, on real Redis and workers."""

from __future__ import annotations

import json
import time
from collections import Counter
from typing import Any

import pytest

import tests.apps.control  # noqa: F401  declares the test topics in this (publisher) process
from eventbus import publish_many
from eventbus.brokers.redis.ledger import RedisLedger
from eventbus.cli import main
from eventbus.control import ControlPlane, DeadLetterFilter, JobState
from eventbus.delivery import delivery_id
from eventbus.errors import InvalidJobState, JobNotFound, QueueNotFound
from eventbus.ledger import JobState as LedgerState
from eventbus.ledger import transition
from eventbus.retention import Retention
from tests.conftest import REDIS_URL, wait_for

pytestmark = [pytest.mark.redis, pytest.mark.slow]

APP = "tests.apps.control"


def calls(redis_client: Any, ns: str) -> Counter[str]:
    return Counter({k.decode(): int(v) for k, v in redis_client.hgetall(f"{ns}:test:calls").items()})


def dead_deliveries(cp: ControlPlane, worker: Any, n: int) -> list[str]:
    """Publish n ctl.happened events; returns the job ids of the n deliveries to ``broken`` once all are dead."""
    events = publish_many([("ctl.happened", {"n": i}) for i in range(n)])
    wait_for(lambda: sum(t.failed for t in cp.stats().topics) >= n, 60, worker)
    wait_for(lambda: cp.stats().queue("ctl").completed >= 2 * n, 30, worker)
    return [delivery_id(e.id, "broken") for e in events]


def run(capsys: Any, namespace: str, *args: str) -> tuple[int, Any]:
    code = main(["--broker-url", REDIS_URL, "--namespace", namespace, *args])
    out = capsys.readouterr().out
    try:
        return code, json.loads(out)
    except json.JSONDecodeError:
        return code, out


def test_jobs_list_newest_first_page_by_page_and_show_one(bus, settings, start_worker, namespace, capsys):
    # Given 12 dead deliveries and 24 completed ones
    worker = start_worker(APP)
    cp = ControlPlane(bus, settings)
    ids = dead_deliveries(cp, worker, 12)
    # When the dead jobs are listed 5 at a time (CLI, --json)
    seen, cursor = [], None
    while True:
        args = ["jobs", "ctl_dead", "--state", "dead", "--limit", "5", "--json"] + (
            ["--cursor", cursor] if cursor else []
        )
        code, page = run(capsys, namespace, *args)
        assert code == 0
        seen += [j["id"] for j in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    # Then every job appears once, newest first
    assert sorted(seen) == sorted(ids)
    times = [cp.get_job(i).updated_at_ms for i in seen]
    assert times == sorted(times, reverse=True)
    assert len(cp.list_jobs("ctl", "completed", limit=1000).items) == 24
    # And one job is shown by id, with its traceback; unknown ids and queues are "not found" (exit 1)
    code, job = run(capsys, namespace, "job", ids[0], "--json")
    assert code == 0 and job["state"] == "dead" and job["attempts"] == 3 and "broken cannot handle" in job["traceback"]
    assert job["payload"]["kwargs"]["subscription"] == "broken"
    assert main(["--broker-url", REDIS_URL, "--namespace", namespace, "job", "nope"]) == 1
    assert main(["--broker-url", REDIS_URL, "--namespace", namespace, "jobs", "nosuchqueue"]) == 1
    assert main(["--broker-url", REDIS_URL, "--namespace", namespace, "jobs", "ctl", "--state", "bogus"]) == 2
    capsys.readouterr()
    code, text = run(capsys, namespace, "stats")
    assert code == 0 and "ctl_dead" in text and "ctl.happened" in text


def test_retry_one_job_retry_all_failed_with_a_limit_and_remove(
    bus, settings, start_worker, redis_client, namespace, capsys
):
    # Given 6 dead deliveries, and the subscriber fixed
    worker = start_worker(APP)
    cp = ControlPlane(bus, settings)
    ids = dead_deliveries(cp, worker, 6)
    redis_client.set(f"{namespace}:test:fixed", 1)
    # When one is retried by id, then 3 more with --all-failed --limit 3
    assert run(capsys, namespace, "retry", ids[0])[0] == 0
    code, out = run(capsys, namespace, "retry", "--all-failed", "ctl_dead", "--limit", "3", "--json")
    assert code == 0 and len(out["requeued"]) == 3 and ids[0] not in out["requeued"]
    # Then those 4 run once and complete; 2 stay dead
    retried = [ids[0], *out["requeued"]]
    wait_for(lambda: all(cp.get_job(i).state == JobState.COMPLETED for i in retried), 30, worker)
    assert cp.stats().queue("ctl_dead").dead == 2
    assert sum(n for k, n in calls(redis_client, namespace).items() if k.startswith("broken_fixed")) == 4
    # And retrying a completed job is refused; removing a dead one deletes its record and its dead letter
    with pytest.raises(InvalidJobState):
        cp.retry_job(ids[0])
    (left, other) = [i for i in ids if i not in retried]
    assert cp.remove_job(left).state == JobState.DEAD
    with pytest.raises(JobNotFound):
        cp.get_job(left)
    assert [d.job_id for d in cp.dead_letters(queue="ctl_dead").items] == [other]
    # And a completed job's record can be removed too
    cp.remove_job(ids[0])
    assert ids[0] not in [j.id for j in cp.list_jobs("ctl_dead", "completed").items]


def test_a_waiting_job_can_be_removed_and_never_runs(bus, settings, start_worker, redis_client, namespace):
    worker = start_worker(APP)
    cp = ControlPlane(bus, settings)
    wait_for(cp.workers, 30, worker)
    cp.pause("slow")
    events = publish_many([("ctl.slow", {"n": i}) for i in range(3)])
    ids = [delivery_id(e.id, "ctl_slow") for e in events]
    wait_for(lambda: cp.stats().queue("slow").waiting == 3, 30, worker)
    wait_for(lambda: len(cp.list_jobs("slow", "waiting").items) == 3, 10, worker)  # ledger writes trail by ~25 ms
    cp.remove_job(ids[1])
    cp.resume("slow")
    wait_for(lambda: sum(calls(redis_client, namespace).values()) >= 2, 30, worker)
    time.sleep(0.5)
    assert set(calls(redis_client, namespace)) == {f"slow|{events[0].id}", f"slow|{events[2].id}"}


def test_dlq_show_filter_requeue_and_purge(bus, settings, start_worker, redis_client, namespace, capsys):
    # Given 5 dead deliveries
    worker = start_worker(APP)
    cp = ControlPlane(bus, settings)
    ids = dead_deliveries(cp, worker, 5)
    # When listed per subscription and shown one by one (CLI)
    code, page = run(capsys, namespace, "dlq", "list", "--subscription", "broken", "--json")
    assert code == 0 and sorted(d["job_id"] for d in page["items"]) == sorted(ids)
    code, letter = run(capsys, namespace, "dlq", "show", ids[0], "--json")
    assert code == 0 and letter["attempts"] == 3 and "Traceback" in letter["traceback"]
    assert main(["--broker-url", REDIS_URL, "--namespace", namespace, "dlq", "show", "nope"]) == 1
    assert (
        main(["--broker-url", REDIS_URL, "--namespace", namespace, "dlq", "requeue"]) == 2
    )  # says which letters, or nothing happens
    # When those matching an error text are requeued (none match), then one is purged by id
    assert cp.requeue_dead_letters(match=DeadLetterFilter(error_contains="no such text")).requeued == []
    code, out = run(capsys, namespace, "dlq", "purge", ids[0], "--json")
    assert code == 0 and out == {"purged": 1}
    # Then its record stays as failed history, and the rest can be purged by age
    assert cp.get_job(ids[0]).state == JobState.FAILED
    assert cp.stats().queue("ctl_dead").failed == 1
    assert cp.purge_dead_letters(older_than_s=3600) == 0
    assert cp.purge_dead_letters(match=DeadLetterFilter(queue="ctl_dead"), everything=True) == 4
    assert cp.dead_letters().items == []


def test_clean_removes_old_records_or_keeps_the_newest_n(bus, settings, start_worker, namespace, capsys):
    # Given 20 completed deliveries on ctl
    worker = start_worker(APP)
    cp = ControlPlane(bus, settings)
    dead_deliveries(cp, worker, 10)
    # When cleaned down to the newest 5, then everything older than 0 s
    code, out = run(capsys, namespace, "clean", "ctl", "--keep", "5", "--json")
    assert code == 0 and out == {"removed": 15}
    newest = cp.list_jobs("ctl", "completed").items
    assert len(newest) == 5
    assert main(["--broker-url", REDIS_URL, "--namespace", namespace, "clean", "ctl", "--older-than", "1h"]) == 0
    assert len(cp.list_jobs("ctl", "completed").items) == 5
    assert cp.clean("ctl", older_than_s=0) == 5
    assert cp.stats().queue("ctl").completed == 0
    with pytest.raises(JobNotFound):
        cp.get_job(newest[0].id)
    # And bad input is refused before anything is removed
    assert main(["--broker-url", REDIS_URL, "--namespace", namespace, "clean", "ctl", "--older-than", "soon"]) == 2
    assert main(["--broker-url", REDIS_URL, "--namespace", namespace, "clean", "nosuch", "--older-than", "7d"]) == 1
    with pytest.raises(QueueNotFound):
        cp.clean("nosuch", older_than_s=1)


def test_workers_enforce_retention_on_a_schedule_and_log_stats(bus, settings, start_worker, namespace):
    # Given a worker whose dead letters live 1 s, completed records are kept 3 per queue, stats logged every 1 s
    env = {
        "EVENTBUS_DEAD_LETTER_TTL_S": "1",
        "EVENTBUS_HOUSEKEEPING_INTERVAL_S": "0.5",
        "EVENTBUS_KEEP_COMPLETED": "3",
        "EVENTBUS_STATS_INTERVAL_S": "1",
    }
    worker = start_worker(APP, extra_env=env)
    cp = ControlPlane(bus, settings)
    events = publish_many([("ctl.happened", {"n": i}) for i in range(4)])
    # When nothing else happens, Then the dead letters are purged by the worker within a few seconds
    wait_for(lambda: sum(t.failed for t in cp.stats().topics) >= 4, 60, worker)
    wait_for(lambda: cp.stats().queue("ctl_dead").dead == 0, 10, worker)
    # (the purge removes the dead letters, then marks their records failed: a second write)
    wait_for(lambda: cp.get_job(delivery_id(events[0].id, "broken")).state == JobState.FAILED, 5, worker)
    # And only the newest 3 completed records are kept per queue
    assert cp.stats().queue("ctl").completed == 3
    # And the worker logs a statistics block
    wait_for(lambda: "eventbus stats (namespace" in worker.output(), 10, worker)
    assert "ctl_dead" in worker.output()


def test_no_stats_block_when_the_interval_is_0(bus, settings, start_worker, namespace):
    worker = start_worker(APP, extra_env={"EVENTBUS_STATS_INTERVAL_S": "0"})
    publish_many([("ctl.slow", {"n": 1})])
    time.sleep(2)
    worker.terminate()
    assert "eventbus stats" not in worker.output()


def test_a_late_waiting_write_never_overwrites_active(bus, settings, redis_client, namespace):
    # Given a job a fast worker marked active before the publisher's "waiting" write arrived
    from eventbus.delivery import EVENTS_QUEUE, FANOUT_ACTOR, build_message

    store = RedisLedger(redis_client, namespace, Retention.from_settings(settings))
    message = build_message(EVENTS_QUEUE, FANOUT_ACTOR, {"event": {"id": "E1", "topic": "t"}}, {"topic": "t"}, "E1")
    store.apply([transition(message, LedgerState.ACTIVE, 1, worker="w:1")])
    # When the late waiting write arrives
    assert store.apply([transition(message, LedgerState.WAITING, 1)]) == 0
    # Then the job is still active, listed once, under active only
    (record,) = store.get(["E1"])
    assert record.state == LedgerState.ACTIVE and record.worker == "w:1"
    assert redis_client.zcard(store.state_key("events", "waiting")) == 0
    # And the next attempt's waiting write (after a retry) is applied
    retried = message.copy(options={"retries": 1})
    assert store.apply([transition(retried, LedgerState.WAITING, 2)]) == 1
    assert store.get(["E1"])[0].state == LedgerState.WAITING


def test_with_the_ledger_off_workers_write_no_job_records(bus, settings, start_worker, redis_client, namespace):
    worker = start_worker(APP, extra_env={"EVENTBUS_LEDGER": "0"})
    from dataclasses import replace

    from eventbus.middleware.ledger import Ledger

    for m in bus.middleware:  # this publisher too
        if isinstance(m, Ledger):
            m.settings = replace(m.settings, ledger=False)
    publish_many([("ctl.slow", {"n": i}) for i in range(5)])
    wait_for(lambda: sum(calls(redis_client, namespace).values()) >= 5, 30, worker)
    time.sleep(0.3)
    assert list(redis_client.scan_iter(f"{namespace}:job:*")) == []
