"""A message that kills its worker: dead-lettered as ``worker_lost`` with the runs it had, on the
backends whose data outlives a worker process (``memory://`` lives and dies with its one process).
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from eventbus import publish_event, publish_many
from eventbus.control import ControlPlane, JobState
from eventbus.deadletter import DeadReason
from eventbus.delivery import delivery_id
from tests.apps import contract_control as app
from tests.conftest import ROOT, WorkerProcess, wait_for
from tests.contract.invariants import assert_invariants


@pytest.fixture
def cp(contract_bus):
    app.reset()
    yield ControlPlane(contract_bus.broker, contract_bus.settings)
    app.reset()


def start_poison_worker(contract_bus, tmp_path: Path, n: int) -> WorkerProcess:
    """A worker process of one thread on the contract bus, quick to notice a dead worker (lease, heartbeat)."""
    url = contract_bus.settings.broker_url + ("?lease_s=2" if contract_bus.kind == "sqlite" else "")
    env = dict(
        os.environ,
        EVENTBUS_BROKER_URL=url,
        EVENTBUS_NAMESPACE=contract_bus.settings.namespace,
        EVENTBUS_SUBSCRIBERS=app.__name__,
        EVENTBUS_DEFAULT_SUBSCRIBERS="0",
        EVENTBUS_HEARTBEAT_TIMEOUT_S="2",
        EVENTBUS_HEARTBEAT_INTERVAL_S="0.5",
        PYTHONPATH=str(ROOT),
        dramatiq_worker_timeout="100",
    )
    args = ["-p", "1", "-t", "1", "--worker-shutdown-timeout", "20000"]
    worker = WorkerProcess(env, args, tmp_path / f"poison-worker-{n}.log")
    wait_for(lambda: "eventbus worker: broker" in worker.output(), 60, worker)
    return worker


@pytest.mark.slow
@pytest.mark.parametrize("contract_bus", ["sqlite", "redis"], indirect=True)
def test_a_message_that_kills_its_worker_is_a_worker_lost_letter_with_its_runs(contract_bus, cp, tmp_path, monkeypatch):
    # Given innocent cc.poison events queued with one that SIGKILLs its worker 200 ms into every run
    monkeypatch.setenv(app.RUNS_FILE_ENV, str(tmp_path / "runs.txt"))
    innocent = publish_many([("cc.poison", {"n": i}) for i in range(3)])
    killer = publish_event("cc.poison", {"kill": True, "kill_after_ms": 200})
    # When a supervised worker process (started again whenever it dies) runs until the killer is dead-lettered
    workers = [start_poison_worker(contract_bus, tmp_path, 0)]
    deadline = time.monotonic() + 120
    try:
        while not cp.dead_letters(queue="cc_poison").items:
            assert time.monotonic() < deadline, workers[-1].output()[-3000:]
            if workers[-1].proc.poll() is not None:
                assert len(workers) <= 5, "the poison message was redelivered more than 4 times"
                workers.append(start_poison_worker(contract_bus, tmp_path, len(workers)))
            time.sleep(0.1)
        if workers[-1].proc.poll() is not None:
            workers.append(start_poison_worker(contract_bus, tmp_path, len(workers)))
        # Then its dead letter says why, and that it ran 3 times (its start mark was written before each death)
        letter = cp.get_dead_letter(delivery_id(killer.id, "cc_poison"))
        assert (letter.reason, letter.error_type) == (DeadReason.WORKER_LOST, "WorkerLost")
        assert letter.attempts == app.runs()[f"cc_poison|{killer.id}"] == 3
        listed = cp.dead_letters(queue="cc_poison").items
        assert [(d.job_id, d.reason, d.attempts) for d in listed] == [(letter.job_id, DeadReason.WORKER_LOST, 3)]
        # And its job is dead after 3 attempts, not left active by the run that killed the worker
        wait_for(lambda: cp.get_job(letter.job_id).state == JobState.DEAD, 10)
        assert cp.get_job(letter.job_id).attempts == 3 and cp.stats().queue("cc_poison").active == 0
        # And the innocent events are delivered, and the queue counts nothing as delayed any more
        wait_for(lambda: all(app.runs()[f"cc_poison|{e.id}"] for e in innocent), 60, workers[-1])
        wait_for(lambda: cp.stats().queue("cc_poison").waiting == 0, 30, workers[-1])
        assert cp.stats().queue("cc_poison").delayed == 0
        if contract_bus.kind == "redis":  # the count the promoter decrements is back at zero, not below
            scheduled = contract_bus.broker.client.hget(contract_bus.broker.key("schedule.counts"), "cc_poison")
            assert int(scheduled or 0) == 0
        # And every invariant holds
        assert_invariants(cp)
    finally:
        for worker in workers:
            worker.terminate()
