"""The publisher of the disk-full scenario, in a process of its own: it fills the disk, then gets space back.

``python -m tests.faults.disk_full_publisher OUT.json --ballast PATH`` frees space by deleting the
ballast file (the bus file is on a small filesystem); ``--fsize-limit BYTES`` sets this process's
file-size limit (``ulimit -f``, SIGXFSZ ignored: writes past it fail with EFBIG) and raises it again.
The broker comes from the EVENTBUS_* environment. OUT.json gets what happened (:class:`Outcome`).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import signal
from dataclasses import asdict, dataclass, field

from eventbus import PublishError, publish_event, publish_many
from eventbus.broker import get_broker

BATCH = 50
PAD = "x" * 2_000
MAX_BATCHES = 200  # a bound: about 20 MB of events, far more than the space the test leaves
MAX_SINGLES = 500


@dataclass
class Outcome:
    acknowledged: list[str] = field(default_factory=list)  # ids of events publish_* returned
    many_error: str = ""  # the PublishError of the batch that did not fit
    rows_before_failed_batch: int = -1
    rows_after_failed_batch: int = -1
    single_error: str = ""  # the PublishError of the first publish_event that did not fit
    resumed: bool = False


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("out")
    parser.add_argument("--ballast")
    parser.add_argument("--fsize-limit", type=int)
    args = parser.parse_args()
    import tests.apps.fault_recording  # noqa: F401  (declares fault.happened)

    store = get_broker().store  # the SQLite broker's store: counts the messages a failed batch may have left
    outcome = Outcome()
    if args.fsize_limit:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (args.fsize_limit, resource.RLIM_INFINITY))

    def rows() -> int:
        return int(store.execute("SELECT COUNT(*) FROM messages")[0][0])

    for batch in range(MAX_BATCHES):  # batches until one does not fit
        before = rows()
        try:
            events = publish_many([("fault.happened", {"batch": batch, "n": i, "pad": PAD}) for i in range(BATCH)])
        except PublishError as exc:
            outcome.many_error = str(exc)
            outcome.rows_before_failed_batch, outcome.rows_after_failed_batch = before, rows()
            break
        outcome.acknowledged += [e.id for e in events]
    for n in range(MAX_SINGLES):  # single events fill what the failed batch left
        try:
            outcome.acknowledged.append(publish_event("fault.happened", {"single": n, "pad": PAD}).id)
        except PublishError as exc:
            outcome.single_error = str(exc)
            break
    # Space returns
    if args.ballast:
        os.remove(args.ballast)
    if args.fsize_limit:
        resource.setrlimit(resource.RLIMIT_FSIZE, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
    events = publish_many([("fault.happened", {"after": i}) for i in range(BATCH)])
    events.append(publish_event("fault.happened", {"after": BATCH}))
    outcome.acknowledged += [e.id for e in events]
    outcome.resumed = True
    with open(args.out, "w") as out:
        json.dump(asdict(outcome), out)


if __name__ == "__main__":
    main()
