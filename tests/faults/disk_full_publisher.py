"""The publisher of the disk-full scenarios, in a process of its own: it fills the disk, then gets space back.

``python -m tests.faults.disk_full_publisher OUT.json --ballast PATH`` frees space by deleting the
ballast file (the broker's files are on a small filesystem); ``--fsize-limit BYTES`` sets this
process's file-size limit (``ulimit -f``, SIGXFSZ ignored: writes past it fail with EFBIG) and raises
it again. The broker comes from the EVENTBUS_* environment. OUT.json gets what happened (:class:`Outcome`).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import signal
import time
from dataclasses import asdict, dataclass, field

from eventbus import PublishError, publish_event, publish_many

MAX_BATCHES = 100  # bounds: far more than the space the test leaves
MAX_SINGLES = 500
RESUME_WITHIN_S = 15


@dataclass
class Outcome:
    acknowledged: list[str] = field(default_factory=list)  # ids of the events publish_* returned
    many_error: str = ""  # the PublishError of the first batch that did not fit
    single_error: str = ""  # the PublishError of the first publish_event that did not fit
    resume_s: float = -1  # space back -> the first publish taken


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("out")
    parser.add_argument("--ballast")
    parser.add_argument("--fsize-limit", type=int)
    parser.add_argument("--batch", type=int, default=50)
    parser.add_argument("--pad", type=int, default=2_000)
    args = parser.parse_args()
    import tests.apps.fault_recording  # noqa: F401  (declares fault.happened)

    outcome = Outcome()
    pad = "x" * args.pad
    if args.fsize_limit:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (args.fsize_limit, resource.RLIM_INFINITY))
    for batch in range(MAX_BATCHES):  # batches until one does not fit
        try:
            events = publish_many([("fault.happened", {"batch": batch, "n": i, "pad": pad}) for i in range(args.batch)])
        except PublishError as exc:
            outcome.many_error = str(exc)
            break
        outcome.acknowledged += [e.id for e in events]
    for n in range(MAX_SINGLES):  # single events, until one does not fit either
        try:
            outcome.acknowledged.append(publish_event("fault.happened", {"single": n, "pad": pad}).id)
        except PublishError as exc:
            outcome.single_error = str(exc)
            break
    # Space returns
    if args.ballast:
        os.remove(args.ballast)
    if args.fsize_limit:
        resource.setrlimit(resource.RLIMIT_FSIZE, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
    back_at = time.monotonic()
    while True:  # Redis retries its own write within a second: until then it refuses writes
        try:
            events = publish_many([("fault.happened", {"after": i}) for i in range(50)])
            break
        except PublishError:
            if time.monotonic() - back_at > RESUME_WITHIN_S:
                raise
            time.sleep(0.05)
    outcome.resume_s = time.monotonic() - back_at
    events.append(publish_event("fault.happened", {"after": 50}))
    outcome.acknowledged += [e.id for e in events]
    with open(args.out, "w") as out:
        json.dump(asdict(outcome), out)


if __name__ == "__main__":
    main()
