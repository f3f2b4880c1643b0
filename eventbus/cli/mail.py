"""Mail commands: ``eventbus render`` (preview a template), ``eventbus smtp-sink`` (a development SMTP server)
and ``eventbus mail uncertain`` (list, or knowingly resend, emails that may or may not have arrived)."""

from __future__ import annotations

import asyncio
import time
from email.parser import BytesHeaderParser
from pathlib import Path
from typing import Any

import click

from eventbus.cli.base import cli, json_object
from eventbus.cli.control import emit_json, faces_errors, json_option, plane, show, when
from eventbus.cli.signals import stop_event
from eventbus.errors import EventBusError
from eventbus.mail.message import build_email, message_id_for
from eventbus.mail.template import available_templates, render, sample_context
from eventbus.settings import get_settings


@cli.command("render")
@click.argument("template", required=False)
@click.option(
    "--context", "context_json", default=None, help="The template context as a JSON object (default: its sample.json)."
)
@click.option(
    "--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), default=Path("."), show_default=True
)
@click.option("--to", default="preview@example.com", show_default=True, help="The To address of the .eml.")
@click.option("--list", "list_only", is_flag=True, help="List the templates and exit.")
def render_command(template: str | None, context_json: str | None, out_dir: Path, to: str, list_only: bool) -> None:
    """Render TEMPLATE with --context; writes TEMPLATE.eml and TEMPLATE.html into --out and prints their paths."""
    settings = get_settings()
    if list_only or not template:
        for name in available_templates(settings):
            click.echo(name)
        return
    context = sample_context(template, settings) if context_json is None else json_object(context_json, "--context")
    rendered = render(template, context, settings)
    email = build_email(
        rendered,
        sender=settings.smtp_from,
        to=[to],
        message_id=message_id_for(f"preview:{template}", settings.smtp_from),
    )
    out_dir.mkdir(parents=True, exist_ok=True)
    eml, html = out_dir / f"{template}.eml", out_dir / f"{template}.html"
    eml.write_bytes(email.as_bytes())
    html.write_text(rendered.html, encoding="utf-8")
    click.echo(f"subject: {rendered.subject}")
    click.echo(str(eml))
    click.echo(str(html))


@cli.command("smtp-sink")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=click.IntRange(0, 65535), default=1025, show_default=True)
@click.option(
    "--dir",
    "out_dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Store each message here as an .eml file (default: print only).",
)
@click.option(
    "--tls-cert",
    type=click.Path(exists=True, dir_okay=False),
    default=None,
    help="PEM certificate: offer STARTTLS (with --tls-key).",
)
@click.option("--tls-key", type=click.Path(exists=True, dir_okay=False), default=None)  # fmt: skip
def smtp_sink(host: str, port: int, out_dir: Path | None, tls_cert: str | None, tls_key: str | None) -> None:
    """A development SMTP server: accepts every message, stores it as .eml, prints one line per message."""
    import ssl

    from aiosmtpd.controller import Controller

    if out_dir is not None:
        out_dir.mkdir(parents=True, exist_ok=True)
    extra: dict[str, Any] = {}
    if tls_cert:
        if not tls_key:
            raise EventBusError("--tls-cert needs --tls-key (the certificate's private key, PEM)")
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(tls_cert, tls_key)
        extra = {"tls_context": context}
    controller = Controller(SinkHandler(out_dir), hostname=host, port=port, ready_timeout=10, **extra)
    stop = stop_event()
    controller.start()
    click.echo(f"smtp-sink listening on {host}:{port}" + (f", storing in {out_dir}" if out_dir else ""), err=True)
    try:
        while not stop.wait(0.5):
            pass
    finally:
        controller.stop()


_PARSER = BytesHeaderParser()


class SinkHandler:
    """aiosmtpd handler: one .eml per message (named by time and count), one printed line each."""

    def __init__(self, out_dir: Path | None) -> None:
        self.out_dir = out_dir
        self.count = 0

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        """Store and print; always accepts."""
        self.count += 1
        data: bytes = envelope.original_content or envelope.content
        subject = _PARSER.parsebytes(data, headersonly=True)["Subject"]  # headers only: keep the sink fast
        name = f"{time.strftime('%Y%m%d-%H%M%S')}-{self.count:06d}.eml"
        if self.out_dir is not None:
            await asyncio.to_thread((self.out_dir / name).write_bytes, data)
        line = f"{name} from={envelope.mail_from} to={','.join(envelope.rcpt_tos)} subject={subject!r}"
        print(line, flush=True)
        return "250 2.0.0 stored"


class _BadInput(click.ClickException):
    """A key that names no uncertain email: exit 2 with one line, like any other bad input."""

    exit_code = 2


@cli.group("mail")
def mail_group() -> None:
    """Email sends: uncertain emails."""


@mail_group.command("uncertain")
@click.option(
    "--resend",
    "resend_key",
    metavar="KEY",
    default=None,
    help="Send the uncertain email KEY again: a duplicate if the first copy did arrive.",
)
@click.option("--limit", type=click.IntRange(1, 1000), default=50, show_default=True)
@click.option("--cursor", default=None, help="next_cursor of the previous page.")
@json_option
@faces_errors
def uncertain(resend_key: str | None, limit: int, cursor: str | None, as_json: bool) -> None:
    """Emails whose data went to SMTP with no reply recorded: the recipient may or may not have them.

    They are not resent on their own (at most once); each is a dead letter of the email queue with
    reason ``uncertain``. ``--resend KEY`` sets its send record back to pending and requeues it.
    """
    cp = plane()
    if resend_key is not None:
        try:
            done = cp.resend_uncertain(resend_key)
        except EventBusError as exc:
            raise _BadInput(str(exc)) from None
        if as_json:
            emit_json(done.to_dict())
        else:
            click.echo(
                f"resending {done.key}: its record was {done.previous_state or 'gone'}; job {done.job_id} queued"
            )
        return
    page = cp.uncertain_emails(limit=limit, cursor=cursor)
    if as_json:
        emit_json(page.to_dict())
        return
    from rich.table import Table

    table = Table("key", "to", "template", "attempts", "since", "dead letter", title="uncertain emails")
    for e in page.items:
        table.add_row(e.key, ", ".join(e.to), e.template, str(e.attempts), when(e.dead_at_ms), e.job_id)
    show(table)
    if page.next_cursor:
        click.echo(f"more: --cursor {page.next_cursor}")
