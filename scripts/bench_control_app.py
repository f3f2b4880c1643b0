"""The subscriber drained by scripts/bench_control.py: does nothing, on its own queue."""

from eventbus import Event, declare_topic, subscribe

declare_topic("bench.noop")


@subscribe("bench.noop", name="bench_noop", queue="bench")
def noop(event: Event) -> None:
    """A no-op delivery: what is measured is the bus's own cost per job."""
