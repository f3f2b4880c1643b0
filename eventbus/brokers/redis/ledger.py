"""The job ledger in Redis: every key it uses, the write script, and the reads the control plane needs.

Keys under the broker namespace:

- ``job:<id>`` hash: the record (see :class:`eventbus.job_record.JobRecord`)
- ``jobs:<queue>:<state>`` zset: job ids by time of entering that state (list newest first)
- ``queues`` set: every queue a job or worker used
- ``processed:<queue>:<5 s bucket>`` counters of finished jobs (expire after 70 s)
- ``topicstats`` hash: ``<topic>|published``, ``<topic>|deliveries``, ``<topic>|failed``
- ``event:<id>`` string: a published event (JSON), kept ``event_retention_s`` for replay
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from typing import Any

import redis

from eventbus import encoder
from eventbus.brokers.redis.direct import Direct
from eventbus.brokers.redis.lua import load
from eventbus.job_record import JobRecord
from eventbus.ledger import Completion, JobState, LedgerWrite, make_full
from eventbus.retention import Retention

_APPLY = load("ledger_apply")  # see lua/ledger_prelude.lua for the parts it shares with the ack script
_TRIM = load("ledger_trim")

_CHUNK = 100


def wire(ops: Iterable[LedgerWrite]) -> list[dict[str, Any]]:
    """``ops`` as the write scripts read them (``op.id``, ``op.s`` ...; see lua/ledger_apply.lua): short
    keys, the sequence and time as strings, the optional keys only when set, no message (``c`` says
    compact)."""
    out = []
    for op in ops:
        w: dict[str, Any] = {
            "id": op.job_id,
            "q": op.queue,
            "s": op.state,  # a str enum: JSON has its value
            "seq": str(op.seq),
            "t": str(op.at_ms),
            "kind": op.kind,
            "topic": op.topic,
            "f": op.fields,
        }
        if op.message is not None:
            w["c"] = 1
        if op.history is not None:
            w["h"] = op.history
        if op.event_json is not None:
            w["ev"], w["eid"] = op.event_json, op.event_id
        if op.force or op.existing:  # the control plane's writes only
            if op.force:
                w["force"] = True
            if op.existing:
                w["existing"] = True
        out.append(w)
    return out


class RedisLedger:
    """Reads and writes the ledger of one namespace."""

    def __init__(
        self,
        client: redis.Redis,  # type: ignore[type-arg]
        namespace: str,
        retention: Retention,
        direct: Direct | None = None,
    ) -> None:
        self.client = client
        self.namespace = namespace
        self.retention = retention
        self._apply = client.register_script(_APPLY)
        self.direct = direct or Direct(client)
        self._trim = client.register_script(_TRIM)

    def key(self, *parts: str) -> str:
        return ":".join((self.namespace, *parts))

    def job_key(self, job_id: str) -> str:
        return self.key("job", job_id)

    def state_key(self, queue: str, state: JobState | str) -> str:
        return self.key("jobs", queue, str(state))

    def apply(self, ops: Sequence[LedgerWrite], done: Sequence[Completion] = ()) -> int:
        """Apply writes in order, then completions, in one round trip per ``_CHUNK``; returns how many
        were newer than the stored records. (A worker's completions usually go with its acks instead.)

        ARGV: namespace, writes (JSON, see :func:`wire`), the six retention values. The script returns the number
        applied, then the ids of compact writes that found no record; those are sent again in full.
        """
        ops = [*ops, *(c.write() for c in done)]
        if not ops:
            return 0
        args = self.retention.args()
        applied, missing = 0, set[str]()
        for i in range(0, len(ops), _CHUNK):
            chunk = encoder.dumps_for_lua(wire(ops[i : i + _CHUNK]))
            reply = self.direct.evalsha(self._apply, self.namespace, chunk, *args)
            applied += int(reply[0])
            missing.update(job_id.decode() for job_id in reply[1:])
        if missing:  # compact writes of jobs with no record yet (their enqueue's write is still on its way)
            applied += self.apply([make_full(op) for op in ops if op.job_id in missing])
        return applied

    def get(self, job_ids: Iterable[str]) -> list[JobRecord | None]:
        """The records of ``job_ids`` (None where there is none), in one round trip."""
        ids = list(job_ids)
        if not ids:
            return []
        with self.client.pipeline(transaction=False) as pipe:
            for job_id in ids:
                pipe.hgetall(self.job_key(job_id))
            raws = pipe.execute()
        return [JobRecord.from_hash(raw) if raw and b"id" in raw else None for raw in raws]

    def queues(self) -> set[str]:
        """Every queue a job or a worker used under this namespace."""
        return {q.decode() for q in self.client.smembers(self.key("queues"))}

    def register_queues(self, queues: Iterable[str]) -> None:
        names = list(queues)
        if names:
            self.client.sadd(self.key("queues"), *names)

    def trim(self, queue: str, state: JobState, *, older_than_ms: int | None = None, keep: int | None = None) -> int:
        """Remove records of ``queue`` in ``state`` older than the cutoff (epoch ms) or beyond the newest ``keep``."""
        removed = 0
        while True:
            n = int(
                self._trim(
                    args=[
                        self.namespace,
                        self.state_key(queue, state),
                        "" if older_than_ms is None else older_than_ms,
                        keep or 0,
                    ]
                )
            )
            removed += n
            if n < 1000:
                return removed

    def event(self, event_id: str) -> dict[str, Any] | None:
        """A stored published event, or None once past its retention."""
        raw = self.client.get(self.key("event", event_id))
        return json.loads(raw) if raw else None
