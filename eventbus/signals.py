"""Lifecycle signals (blinker) that applications can connect to.

``published`` fires in the publishing process; the others fire in the worker that ran the delivery.
Receivers get the :class:`~eventbus.event.Event` as sender and keyword arguments.
"""

from __future__ import annotations

from blinker import Namespace

_signals = Namespace()

published = _signals.signal("published", doc="An event was written to the broker (kw: priority).")
delivered = _signals.signal("delivered", doc="A subscriber returned normally (kw: subscription).")
failed = _signals.signal("failed", doc="A subscriber raised (kw: subscription, exception, attempt).")
dead_lettered = _signals.signal("dead-lettered", doc="A delivery ran out of retries (kw: subscription, error).")
