"""A full disk under the broker: publishes fail loudly, nothing is half-written, the bus resumes.

Real OS limits only. A small tmpfs filled with a ballast file (ENOSPC: SQLite says ``database or disk
is full``, Redis refuses writes with ``MISCONF``); mounting needs privileges, so where it is refused
those variants are skipped. And the publisher's own file-size limit (``ulimit -f``; SQLite reports the
EFBIG as ``disk I/O error``), which works anywhere. The publisher is a process of its own
(``tests.faults.disk_full_publisher``): it publishes until the disk is full, then gets space back.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import ROOT, wait_for
from tests.faults.conftest import Rig, expected_pairs
from tests.faults.table import report

pytestmark = [pytest.mark.slow]

TMPFS_BYTES = 32 * 1024 * 1024  # room for the worker once the ballast is gone (a SQLite WAL grows to 4 MB)


@dataclass
class SmallDisk:
    """Where the broker keeps its files, and how the publisher runs out of space there."""

    kind: str
    limit: str  # "tmpfs" | "file-size limit"
    dir: Path
    room_bytes: int  # what the broker's files may still grow by
    batch: int  # events per publish_many (Redis: over 500, so a batch is several scripts)
    cause: str  # what the PublishError must name

    def fill(self) -> list[str]:
        """Leave ``room_bytes``; returns the publisher's arguments, which say how space comes back."""
        args = ["--batch", str(self.batch)]
        if self.limit == "tmpfs":
            stat = os.statvfs(self.dir)
            ballast = self.dir / "ballast"
            ballast.write_bytes(b"\0" * max(0, stat.f_bavail * stat.f_frsize - self.room_bytes))
            return [*args, "--ballast", str(ballast)]
        largest = max(p.stat().st_size for p in self.dir.glob("bus.db*"))
        return [*args, "--fsize-limit", str(largest + self.room_bytes)]


DISKS = [
    ("sqlite", "tmpfs", 600_000, 50, "database or disk is full"),
    ("sqlite", "file-size limit", 600_000, 50, "disk I/O error"),
    ("redis", "tmpfs", 2_000_000, 600, "MISCONF"),
]


@contextmanager
def tmpfs(mount: Path) -> Iterator[Path]:
    """A small filesystem of the test's own at ``mount`` (skips the test where mounting is refused)."""
    mount.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={TMPFS_BYTES}", "tmpfs", str(mount)], capture_output=True, text=True
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({done.stderr.strip()})")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


@pytest.fixture(params=DISKS, ids=[f"{kind}-{limit}" for kind, limit, *_ in DISKS])
def small_disk(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[SmallDisk]:
    kind, limit, room_bytes, batch, cause = request.param
    if limit == "file-size limit":
        yield SmallDisk(kind, limit, tmp_path, room_bytes, batch, cause)
        return
    with tmpfs(tmp_path / "disk") as mount:
        yield SmallDisk(kind, limit, mount, room_bytes, batch, cause)


@pytest.fixture
def disk(tmp_path: Path) -> Iterator[Path]:
    with tmpfs(tmp_path / "disk") as mount:
        yield mount


def stored_events(bus: Rig) -> int:
    """Events in the broker that no worker has taken (before any worker runs: every event published)."""
    if bus.kind == "redis":
        return int(bus.broker.client.hlen(bus.broker.key("events.msgs")))
    return int(bus.broker.store.execute("SELECT COUNT(*) FROM messages")[0][0])


def test_a_full_disk_fails_publishes_loudly_and_the_bus_resumes_when_space_returns(small_disk, rig):
    # Given a bus whose files can grow by a little more only
    bus = rig(small_disk.kind, data_dir=small_disk.dir)
    space_back = small_disk.fill()
    # When a publisher publishes batches, then single events, until they do not fit,
    # then gets space back and publishes again
    out = bus.tmp / "publisher.json"
    done = subprocess.run(
        [sys.executable, "-m", "tests.faults.disk_full_publisher", str(out), *space_back],
        env=bus.env(), cwd=ROOT, capture_output=True, text=True, timeout=90,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    outcome = json.loads(out.read_text())
    # Then publish_many and publish_event failed with PublishError naming the cause and the fix
    for error in (outcome["many_error"], outcome["single_error"]):
        assert small_disk.cause in error, error
        assert "free space" in error.lower(), error
        assert "is the broker running" not in error, error
    # ... the failed calls left none of their events (the broker holds exactly those acknowledged)
    assert stored_events(bus) == len(outcome["acknowledged"])
    if small_disk.kind == "sqlite":
        assert bus.broker.store.integrity_check() == "ok"
    # ... and a worker delivers every acknowledged event, exactly once
    expected = expected_pairs(outcome["acknowledged"])
    bus.start_worker(threads=4)
    bus.wait_done(expected, timeout_s=60)
    report(
        f"disk full ({small_disk.limit}), publish until refused",
        small_disk.kind,
        bus.ledger.count(expected),
        recovery_s=outcome["resume_s"],
        note=f"{len(outcome['acknowledged'])} events acknowledged; refused: publish_many of {small_disk.batch}, "
        f"publish_event ({small_disk.cause}); recovery: space back -> first publish taken",
    )


@pytest.mark.parametrize("kind", ["redis", "sqlite"])
def test_a_disk_full_for_3_s_under_a_busy_worker_loses_nothing(disk, rig, kind):
    # Given a worker of 4 threads working through 400 jobs of 20 ms, its broker's files on a small disk
    bus = rig(kind, data_dir=disk)
    worker = bus.start_worker(threads=4)
    expected = bus.publish(200, sleep_ms=20)
    wait_for(lambda: bus.ledger.done() >= 50, 60, worker)
    # When the disk is full for 3 s
    ballast = disk / "ballast"
    with suppress(OSError), ballast.open("wb", buffering=0) as out:  # until the disk is full
        out.write(b"\0" * (os.statvfs(disk).f_bavail * os.statvfs(disk).f_frsize))
    done_at_full, log_at_full = bus.ledger.total(), len(worker.output().splitlines())
    time.sleep(3)
    done_while_full = bus.ledger.total() - done_at_full
    ballast.unlink()
    back_at = time.time()
    # Then every job runs once space returns; a job whose ack could not be written may run again
    bus.wait_done(expected, timeout_s=60)
    complaints = [
        line for line in worker.output().splitlines()[log_at_full:] if "WARNING" in line or "CRITICAL" in line
    ]
    report(
        "disk full 3 s under a busy worker (1 x 4 threads)",
        kind,
        bus.ledger.count(expected),
        allowed_duplicates=done_while_full + 4,
        recovery_s=(bus.ledger.first_after(back_at) or back_at) - back_at,
        note=f"{done_while_full} jobs done while full; {len(complaints)} WARNING/CRITICAL lines; "
        "recovery: space back -> next job done",
    )
