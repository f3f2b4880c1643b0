"""A full disk under the SQLite broker: publishes fail loudly, nothing is half-written, the bus resumes.

Two real OS limits: a small tmpfs filled with a ballast file (``database or disk is full``, ENOSPC;
needs the right to mount, so it is skipped where that is refused) and the publisher's file-size limit
(``ulimit -f``; SQLite reports the EFBIG as ``disk I/O error``), which works anywhere.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import ROOT
from tests.faults.conftest import Rig, expected_pairs
from tests.faults.table import report

pytestmark = [pytest.mark.slow]

ROOM_BYTES = 600_000  # what the bus file may still grow by before the disk is "full"
TMPFS_BYTES = 32 * 1024 * 1024  # room for the worker once the ballast is gone (the WAL alone grows to 4 MB)


@dataclass
class SmallDisk:
    """Where the bus file lives and how the publisher runs out of space there."""

    limit: str
    db: Path
    ballast: Path | None = None

    def fill(self, bus: Rig) -> list[str]:
        """Leave about ROOM_BYTES for the bus file; returns the publisher's arguments that get space back."""
        if self.ballast is not None:
            free = os.statvfs(self.db.parent).f_bavail * os.statvfs(self.db.parent).f_frsize
            with self.ballast.open("wb") as out:
                out.write(b"\0" * max(0, free - ROOM_BYTES))
            return ["--ballast", str(self.ballast)]
        largest = max(p.stat().st_size for p in self.db.parent.glob(self.db.name + "*"))
        return ["--fsize-limit", str(largest + ROOM_BYTES)]


@pytest.fixture(params=["tmpfs", "file-size limit"])
def small_disk(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[SmallDisk]:
    if request.param == "file-size limit":
        yield SmallDisk(request.param, tmp_path / "bus.db")
        return
    mount = tmp_path / "disk"
    mount.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={TMPFS_BYTES}", "tmpfs", str(mount)], capture_output=True, text=True
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({done.stderr.strip()}); the file-size limit variant covers it")
    try:
        yield SmallDisk(request.param, mount / "bus.db", mount / "ballast")
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def test_a_full_disk_fails_publishes_loudly_and_the_bus_resumes_when_space_returns(small_disk, rig):
    # Given a SQLite bus whose file can grow by about 600 KB more
    bus = rig("sqlite", sqlite_path=small_disk.db)
    space_back = small_disk.fill(bus)
    # When a publisher (a process of its own) publishes batches, then single events, until they do not fit,
    # then gets space back and publishes again
    out = bus.tmp / "publisher.json"
    done = subprocess.run(
        [sys.executable, "-m", "tests.faults.disk_full_publisher", str(out), *space_back],
        env=bus.env(), cwd=ROOT, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    outcome = json.loads(out.read_text())
    # Then publish_many and publish_event failed with PublishError naming the cause and the fix
    cause = "database or disk is full" if small_disk.limit == "tmpfs" else "disk I/O error"
    for error in (outcome["many_error"], outcome["single_error"]):
        assert cause in error, error
        assert "free space" in error.lower(), error
        assert "is the broker running" not in error, error
    # ... the failed batch left none of its events, the file is intact, and publishing resumed
    assert outcome["rows_after_failed_batch"] == outcome["rows_before_failed_batch"]
    assert bus.broker.store.integrity_check() == "ok"
    assert outcome["resumed"]
    # ... and a worker delivers every acknowledged event, exactly once
    expected = expected_pairs(outcome["acknowledged"])
    bus.start_worker(threads=4)
    bus.wait_done(expected, timeout_s=60)
    report(
        f"disk full under SQLite ({small_disk.limit})",
        "sqlite",
        bus.ledger.count(expected),
        note=f"{len(outcome['acknowledged'])} events acknowledged; failed: publish_many, publish_event "
        f"({cause}); integrity ok; resumed once space returned",
    )
