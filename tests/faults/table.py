"""The fault table: one row per scenario run, printed at the end of the session by tests/faults/conftest.py."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Row:
    scenario: str
    broker: str
    jobs: int
    lost: int
    duplicates: int
    allowed_duplicates: int
    recovery_s: float | None
    note: str = ""

    def line(self) -> str:
        recovery = "-" if self.recovery_s is None else f"{self.recovery_s:.2f} s"
        dups = f"{self.duplicates} (<= {self.allowed_duplicates})"
        return (
            f"{self.scenario:<50} {self.broker:<7} {self.jobs:>6} {self.lost:>5} {dups:>12} {recovery:>9}  {self.note}"
        )


HEADER = f"{'scenario':<50} {'broker':<7} {'jobs':>6} {'lost':>5} {'duplicates':>12} {'recovery':>9}  note"
ROWS: list[Row] = []


def report(
    scenario: str,
    broker: str,
    counts: tuple[int, int, int],
    *,
    allowed_duplicates: int = 0,
    recovery_s: float | None = None,
    note: str = "",
) -> Row:
    """Record one line of the fault table and assert 0 lost and duplicates within the bound."""
    jobs, lost, duplicates = counts
    row = Row(scenario, broker, jobs, lost, duplicates, allowed_duplicates, recovery_s, note)
    ROWS.append(row)
    print(f"\nFAULT {row.line()}")
    assert lost == 0, f"{scenario} on {broker}: {lost} of {jobs} jobs lost"
    assert duplicates <= allowed_duplicates, f"{scenario} on {broker}: {duplicates} duplicates > {allowed_duplicates}"
    return row
