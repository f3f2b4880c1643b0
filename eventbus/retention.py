"""What the job ledger keeps, and for how long: shared by every backend."""

from __future__ import annotations

from dataclasses import dataclass

from eventbus.settings import Settings

BUCKET_MS = 5_000  # width of the "processed" counters' time buckets


@dataclass(frozen=True)
class Retention:
    """How long terminal records stay (count per queue and age)."""

    keep_completed: int
    keep_failed: int
    completed_max_age_s: int
    failed_max_age_s: int
    dead_ttl_s: int
    event_retention_s: int

    @classmethod
    def from_settings(cls, settings: Settings) -> Retention:
        return cls(
            keep_completed=settings.keep_completed,
            keep_failed=settings.keep_failed,
            completed_max_age_s=settings.completed_max_age_s,
            failed_max_age_s=settings.failed_max_age_s,
            dead_ttl_s=settings.dead_letter_ttl_s,
            event_retention_s=settings.event_retention_s,
        )

    def args(self) -> list[int]:
        """The retention arguments of the apply script, in milliseconds."""
        return [
            self.keep_completed,
            self.keep_failed,
            max(1, self.completed_max_age_s) * 1000,
            max(1, self.failed_max_age_s) * 1000,
            (max(1, self.dead_ttl_s) + 86_400) * 1000,  # the record outlives its dead letter by a day
            max(1, self.event_retention_s) * 1000,
        ]
