"""A queue of encoded messages in four priority lanes: ``get`` always takes from the most urgent one.

A ``queue.Queue`` subclass, so Dramatiq's ``StubBroker.join`` and ``flush`` work on it unchanged.
Items are ``(rank, data)``: rank 0 (CRITICAL) to 3 (LOW), as :func:`eventbus.priority.rank_of`.
"""

from __future__ import annotations

import collections
import queue
from collections.abc import Callable

Item = tuple[int, bytes]

LEVELS = 4


class Lanes(queue.Queue[Item]):
    """One Dramatiq queue (``email``, ``email.DQ``) of the memory broker."""

    def _init(self, maxsize: int) -> None:
        self.lanes: list[collections.deque[bytes]] = [collections.deque() for _ in range(LEVELS)]

    def _qsize(self) -> int:
        return sum(len(lane) for lane in self.lanes)

    def _put(self, item: Item) -> None:
        self.lanes[item[0]].append(item[1])

    def _get(self) -> Item:
        for rank, lane in enumerate(self.lanes):
            if lane:
                return rank, lane.popleft()
        raise queue.Empty  # unreachable: Queue.get waits until _qsize() > 0

    def put_front(self, item: Item) -> None:
        """Put a message back at the head of its lane (a fetched message handed back)."""
        with self.not_empty:
            self.lanes[item[0]].appendleft(item[1])
            self.unfinished_tasks += 1
            self.not_empty.notify()

    def take(self, match: Callable[[bytes], bool]) -> bytes | None:
        """Remove and return the first waiting message ``match`` accepts (None if no such message waits)."""
        with self.mutex:
            for lane in self.lanes:
                for data in lane:
                    if match(data):
                        lane.remove(data)
                        self.unfinished_tasks -= 1
                        if self.unfinished_tasks == 0:
                            self.all_tasks_done.notify_all()
                        return data
        return None

    def find(self, match: Callable[[bytes], bool]) -> bytes | None:
        """The first waiting message ``match`` accepts, left in place."""
        with self.mutex:
            return next((data for lane in self.lanes for data in lane if match(data)), None)
