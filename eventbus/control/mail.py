"""Uncertain emails: list them, and knowingly send one again.

An email is uncertain when its worker stopped (or its server went silent) after the message data
went to SMTP and before the reply was recorded: the recipient may or may not have it. The send
job keeps it as a dead letter of the ``email`` queue with reason ``uncertain``
(:mod:`eventbus.mail.uncertain`); these functions read those letters. Resending sets the email's
send record back to pending (what it says was accepted stays accepted) and requeues the letter's
job, which then sends it: a duplicate if the first copy did arrive, which is the operator's call.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import dramatiq

from eventbus.control.deadletters import _fresh, locate
from eventbus.deadletter import DeadReason
from eventbus.errors import NotUncertain, UncertainEmailNotFound
from eventbus.mail.names import EMAIL_QUEUE
from eventbus.mail.uncertain import letter_id
from eventbus.reports import DeadLetterFilter, Page, ResendResult, UncertainEmail
from eventbus.send_record import SendState

if TYPE_CHECKING:
    from eventbus.control import ControlPlane

UNCERTAIN_LETTERS = DeadLetterFilter(queue=EMAIL_QUEUE, reason=DeadReason.UNCERTAIN)


def uncertain_emails(cp: ControlPlane, *, limit: int = 50, cursor: str | None = None) -> Page[UncertainEmail]:
    """Uncertain emails, newest first."""
    if EMAIL_QUEUE not in cp.queues():
        return Page([], None)
    page = cp.dead_letters(match=UNCERTAIN_LETTERS, limit=limit, cursor=cursor)
    return Page([UncertainEmail.from_letter(letter) for letter in page.items], page.next_cursor)


def resend_uncertain(cp: ControlPlane, key: str) -> ResendResult:
    """Send the uncertain email ``key`` again: its record back to pending, its dead letter requeued."""
    records = cp.bus_broker.stores.send_records
    record = records.get(key)
    if record is not None and not (record.uncertain or record.state is SendState.PENDING):
        raise NotUncertain(
            f"email {key!r} is {record.state.value}, not uncertain; only an uncertain email can be resent "
            "(list them with `eventbus mail uncertain`)"
        )
    job_id = letter_id(key)
    taken: list[bytes] = []
    while (found := locate(cp, job_id)) is not None:  # a letter written twice is taken twice, requeued once
        more = cp.store.take_dead(found[0], [found[1]])
        if not more:
            break
        taken += more
    if not taken:
        raise UncertainEmailNotFound(
            f"no uncertain email with key {key!r}: never uncertain, already resent, or its dead letter was purged; "
            "list them with `eventbus mail uncertain`"
        )
    if record is not None:
        records.reset(key)
    message = _fresh(dramatiq.Message.decode(taken[0]))
    try:
        cp.bus_broker.enqueue_many([message])
    except Exception:
        cp.store.put_back_dead(EMAIL_QUEUE, taken[:1])
        raise
    writer = cp.bus_broker.stores.ledger
    if writer is not None:
        writer.flush()
    return ResendResult(key, message.message_id, record.state.value if record is not None else None)
