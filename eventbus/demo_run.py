"""The demo's parts: the scenario it publishes, a quiet SMTP sink, the progress line and the summary."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import click
import dramatiq

from eventbus import publish_event, publish_many
from eventbus.control import ControlPlane
from eventbus.reports import DeadLetter

MODELS = [("m-orca", "Orca 7B"), ("m-heron", "Heron 13B"), ("m-lynx", "Lynx 70B")]


@dataclass
class Scenario:
    """What a day on a model-voting site looks like, compressed into a few seconds."""

    votes: int = 300
    supporters: int = 500
    milestone_subscribers: int = 40
    registrations: int = 5
    referrals: int = 3
    events: int = 0
    expected_emails: int = field(init=False)

    def __post_init__(self) -> None:
        self.expected_emails = (
            self.votes + self.milestone_subscribers + self.supporters + 1 + 2 * self.registrations + self.referrals + 1
        )

    def publish(self) -> int:
        """Publish every event of the scenario; returns how many."""
        votes = [
            ("vote.created", {"voter_email": f"voter{i}@example.com", "model_id": m, "model_name": n})
            for i in range(self.votes)
            for m, n in [MODELS[i % len(MODELS)]]
        ]
        events = publish_many(votes)
        supporters = [f"fan{i}@example.com" for i in range(self.supporters)]
        rank = {"model_id": "m-orca", "model_name": "Orca 7B", "new_rank": 1, "old_rank": 2, "vote_count": 1200}
        more = [
            publish_event("model.rank_changed", {**rank, "supporter_emails": supporters}),
            publish_event(
                "model.progress_milestone",
                {
                    "model_id": "m-heron",
                    "model_name": "Heron 13B",
                    "milestone": "1,000 votes",
                    "vote_count": 1000,
                    "subscriber_emails": [f"follower{i}@example.com" for i in range(self.milestone_subscribers)],
                },
            ),
            publish_event("reward.earned", {"user_email": "voter7@example.com", "reward_name": "Early Voter badge"}),
            publish_event(
                "referral.milestone", {"user_email": "voter1@example.com", "referral_count": 10, "milestone": 10}
            ),
        ]
        for i in range(self.registrations):
            more.append(
                publish_event(
                    "user.registered",
                    {
                        "email": f"newcomer{i}@example.com",
                        "name": f"Newcomer {i}",
                        "verification_url": f"https://votearena.example/verify/{i}",
                    },
                )
            )
        for i in range(self.referrals):
            more.append(
                publish_event(
                    "referral.joined", {"referrer_email": "voter1@example.com", "referred_name": f"Friend {i}"}
                )
            )
        self.events = len(events) + len(more)
        return self.events


class Sink:
    """A local SMTP server (aiosmtpd) that stores each message as an .eml file, silently."""

    def __init__(self, out_dir: Path, port: int) -> None:
        from aiosmtpd.controller import Controller

        self.out_dir = out_dir
        self.port = port
        self.count = 0
        self._controller = Controller(self, hostname="127.0.0.1", port=port, ready_timeout=10)

    def start(self) -> None:
        self._controller.start()

    def stop(self) -> None:
        self._controller.stop()

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        """Store the message; always accept."""
        self.count += 1
        path = self.out_dir / f"{self.count:05d}.eml"
        await asyncio.to_thread(path.write_bytes, envelope.original_content or envelope.content)
        return "250 2.0.0 stored"


def pending_jobs(broker: dramatiq.Broker) -> int:
    """Jobs not finished yet in any queue: waiting, scheduled for a retry, or running."""
    store = ControlPlane(broker).store
    depths, _ = store.depths(sorted(store.queues()))
    return sum(sum(d.ready.values()) + d.unacked + d.scheduled for d in depths)


def jobs_by_state(broker: dramatiq.Broker) -> str:
    """Completed, failed and dead job counts over every queue, from the control plane."""
    stats = ControlPlane(broker).stats()
    totals = {
        state: sum(getattr(q, state) for q in stats.queues)
        for state in ("waiting", "active", "delayed", "completed", "dead")
    }
    return ", ".join(f"{state} {n}" for state, n in totals.items())


def dead_letters(broker: dramatiq.Broker) -> list[DeadLetter]:
    return ControlPlane(broker).dead_letters(limit=1000).items


def progress_line(broker: dramatiq.Broker, sink: Sink, scenario: Scenario, elapsed_s: float) -> tuple[str, bool]:
    """One line of live progress, and whether everything is done."""
    pending = pending_jobs(broker)
    dead = len(dead_letters(broker))
    line = (
        f"{elapsed_s:5.1f} s  emails {sink.count:4d}/{scenario.expected_emails}  "
        f"jobs in flight {pending:5d}  dead letters {dead}"
    )
    return line, sink.count >= scenario.expected_emails and pending == 0 and dead >= 1


def summary(broker: dramatiq.Broker, sink: Sink, scenario: Scenario, mail_dir: Path, elapsed_s: float) -> None:
    """The closing report."""
    echo = click.echo
    echo(f"events published     {scenario.events}")
    echo(f"emails delivered     {sink.count} of {scenario.expected_emails}, as .eml files in {mail_dir}/")
    previews = sorted(mail_dir.glob("*.eml"))
    if previews:
        html = _html_preview(previews[0], mail_dir / "preview.html")
        echo(f"HTML preview         {html}")
    echo(f"jobs still in flight {pending_jobs(broker)}")
    echo(f"jobs by state        {jobs_by_state(broker)}")
    dead = dead_letters(broker)
    echo(f"dead letters         {len(dead)}")
    for letter in dead[:5]:
        who = letter.subscription or letter.actor
        echo(f"  {who}: {letter.error} ({letter.reason.value}, after {letter.attempts} attempts)")
    echo(f"finished in          {elapsed_s:.1f} s")
    echo("")
    echo("Look around:")
    url = f"sqlite:///{(mail_dir.parent / 'eventbus.db').resolve()}"
    echo(f"  export EVENTBUS_BROKER_URL={url}")
    echo("  eventbus stats; eventbus dlq list")
    echo("  eventbus serve --insecure-dev     # then open http://127.0.0.1:8080/ for the dashboard")


def _html_preview(eml: Path, out: Path) -> Path:
    from email import policy
    from email.parser import BytesParser

    message = BytesParser(policy=policy.default).parsebytes(eml.read_bytes())
    part = message.get_body(preferencelist=("html",))
    out.write_text(part.get_content() if part is not None else "(no HTML part)")
    return out
