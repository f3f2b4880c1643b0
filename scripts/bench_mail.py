"""Emails per second from one worker process to a local SMTP sink: pooled connections vs one per email.

``bench_email(pooled, n)`` bulk-sends ``n`` emails on a fresh Redis namespace, runs an in-process
Dramatiq worker (the real send actors, 16 threads, like ``dramatiq eventbus.workers -t 16``)
against ``eventbus smtp-sink`` running in its own process, and times from worker start to the
last send record written. ``bench_raw(pooled, n)`` is the ceiling of the protocol itself: bare
aiosmtplib, 16 concurrent senders, no job, no record, the same message bytes, the same sink.
Both report CPU per email of the sending process and of the sink.

Run directly to print every figure as one JSON object (and write it to ``bench/mail-latest.json``).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import os
import shutil
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiosmtplib
import dramatiq
import redis

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench_keys import drop_namespace  # noqa: E402

from eventbus.app import install_extra_actors  # noqa: E402
from eventbus.broker import make_broker, set_broker  # noqa: E402
from eventbus.delivery import install_actors  # noqa: E402
from eventbus.mail import send_bulk_email  # noqa: E402
from eventbus.mail.attempt import Email, email_bytes  # noqa: E402
from eventbus.settings import Settings, set_settings  # noqa: E402

REDIS_URL = os.environ.get("EVENTBUS_BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")
THREADS = 16  # worker threads, and the pool size of the pooled runs
CONCURRENCY = 16  # senders at once in the raw runs (the job path also sends at most 16 at once)
TEMPLATE = "rank_update"
CONTEXT = {"model_id": "m-1", "model_name": "Orca", "new_rank": 1, "old_rank": 2, "vote_count": 10}
SENDER = "bench@example.com"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _cpu_s(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@dataclasses.dataclass
class Sink:
    """``eventbus smtp-sink`` in its own process; ``starttls`` offers STARTTLS with a self-signed cert."""

    port: int
    proc: subprocess.Popen[bytes]

    def cpu_s(self) -> float:
        return _cpu_s(self.proc.pid)


@contextlib.contextmanager
def sink(starttls: bool) -> Iterator[Sink]:
    port = _free_port()
    tmp = Path(tempfile.mkdtemp(prefix="bench-mail-"))
    tls_args: list[str] = []
    if starttls:
        cert, key = tmp / "sink.pem", tmp / "sink.key"
        subprocess.run(
            ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1",
             "-keyout", str(key), "-out", str(cert)],
            check=True, capture_output=True,
        )  # fmt: skip
        tls_args = ["--tls-cert", str(cert), "--tls-key", str(key)]
    proc = subprocess.Popen(
        [sys.executable, "-c", "from eventbus.cli import run; run()", "smtp-sink", "--port", str(port), *tls_args],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"smtp-sink did not listen on {port}") from None
                time.sleep(0.05)
        yield Sink(port, proc)
    finally:
        proc.terminate()
        proc.wait(10)
        shutil.rmtree(tmp, ignore_errors=True)


def _settings(namespace: str, port: int, pooled: bool, starttls: bool, chunk_size: int | None) -> Settings:
    settings = dataclasses.replace(
        Settings(),
        mail_chunk_size=chunk_size or Settings.from_env().mail_chunk_size,
        broker_url=REDIS_URL,
        namespace=namespace,
        smtp_host="127.0.0.1",
        smtp_port=port,
        smtp_from=SENDER,
        smtp_pool_size=THREADS if pooled else 0,
        smtp_starttls=starttls,
        smtp_verify_certs=False,
        default_subscribers=False,
    )
    # The email queue's production limits (5 at once, 10/s) would cap both sides; lift them here.
    queues = tuple(
        dataclasses.replace(q, concurrency=None, rate_limit=None) if q.name == "email" else q for q in settings.queues
    )
    return dataclasses.replace(settings, queues=queues)


def _figures(label: dict[str, Any], sent: int, elapsed_s: float, client_cpu_s: float, sink_cpu_s: float) -> Any:
    per = max(sent, 1)
    return {
        **label,
        "emails": sent,
        "seconds": round(elapsed_s, 3),
        "emails_per_s": round(sent / elapsed_s, 1),
        "client_cpu_ms_per_email": round(client_cpu_s * 1000 / per, 3),
        "sink_cpu_ms_per_email": round(sink_cpu_s * 1000 / per, 3),
    }


def bench_email(pooled: bool, n: int, *, starttls: bool = False, chunk_size: int | None = None) -> dict[str, Any]:
    """Send ``n`` emails through one worker process (bulk chunks); returns emails/s and CPU per email.

    ``starttls=True`` makes the sink offer STARTTLS with a self-signed certificate and the client
    require it, as with real providers (port 587): each new connection then costs a TLS handshake.
    """
    namespace = f"bench-mail-{uuid.uuid4().hex[:8]}"
    client = redis.Redis.from_url(REDIS_URL)
    with sink(starttls) as server:
        settings = _settings(namespace, server.port, pooled, starttls, chunk_size)
        set_settings(settings)
        broker = make_broker(settings)
        set_broker(broker)
        install_actors(broker)
        install_extra_actors(broker)
        try:
            recipients = [f"user{i}@example.com" for i in range(n)]
            result = send_bulk_email(TEMPLATE, recipients, CONTEXT, priority="normal")
            worker = dramatiq.Worker(broker, worker_threads=THREADS, worker_timeout=100)
            stats = f"{namespace}:mail:stats"
            cpu0, sink0 = time.process_time(), server.cpu_s()
            start = time.perf_counter()
            worker.start()
            deadline = time.monotonic() + max(60, n / 20)
            while int(client.hget(stats, "sent") or 0) < n and time.monotonic() < deadline:
                time.sleep(0.005)
            elapsed = time.perf_counter() - start
            cpu, sink_cpu = time.process_time() - cpu0, server.cpu_s() - sink0
            sent = int(client.hget(stats, "sent") or 0)
            worker.stop()
            label = {
                "pooled": pooled,
                "starttls": starttls,
                "chunk_size": settings.mail_chunk_size,
                "jobs": result.jobs,
                "worker_threads": THREADS,
            }
            return _figures(label, sent, elapsed, cpu, sink_cpu)
        finally:
            drop_namespace(client, namespace)
            set_broker(None)
            set_settings(None)


def bench_raw(pooled: bool, n: int, *, starttls: bool = False, context_per_connection: bool = False) -> dict[str, Any]:
    """The protocol's ceiling: bare aiosmtplib, ``CONCURRENCY`` senders, no job and no send record.

    Pooled: each sender keeps one connection for all its emails. Naive: connect, EHLO (STARTTLS,
    EHLO), MAIL, RCPT, DATA, QUIT for every email. The message bytes are the ones the job sends, and
    both keep one TLS context for all their connections, as the job path does;
    ``context_per_connection=True`` lets aiosmtplib build one per connection instead (its default:
    it loads the CA bundle each time, which costs more CPU than the handshake itself).
    """
    settings = dataclasses.replace(Settings(), smtp_from=SENDER)
    tls = ssl.create_default_context()  # one per process, as the job path's pool keeps one
    tls.check_hostname = False
    tls.verify_mode = ssl.CERT_NONE
    data = email_bytes(Email(TEMPLATE, ["user@example.com"], CONTEXT, "raw", "<raw@example.com>"), settings)
    with sink(starttls) as server:

        def client() -> aiosmtplib.SMTP:
            tls_args: dict[str, Any] = {"validate_certs": False} if context_per_connection else {"tls_context": tls}
            return aiosmtplib.SMTP(
                hostname="127.0.0.1", port=server.port, start_tls=starttls, local_hostname="bench", **tls_args
            )

        async def sender(count: int) -> None:
            smtp = client()
            if pooled:
                await smtp.connect()
            for i in range(count):
                if not pooled:
                    smtp = client()
                    await smtp.connect()
                await smtp.sendmail(SENDER, [f"user{i}@example.com"], data)
                if not pooled:
                    await smtp.quit()
            if pooled:
                await smtp.quit()

        async def run() -> None:
            await asyncio.gather(*(sender(n // CONCURRENCY + (i < n % CONCURRENCY)) for i in range(CONCURRENCY)))

        cpu0, sink0 = time.process_time(), server.cpu_s()
        start = time.perf_counter()
        asyncio.run(run())
        elapsed = time.perf_counter() - start
        cpu, sink_cpu = time.process_time() - cpu0, server.cpu_s() - sink0
    label = {"pooled": pooled, "starttls": starttls, "concurrency": CONCURRENCY}
    if context_per_connection:
        label["tls_context"] = "one per connection (aiosmtplib default)"
    return _figures(label, n, elapsed, cpu, sink_cpu)


def _pair(pooled: dict[str, Any], naive: dict[str, Any]) -> dict[str, Any]:
    return {
        "pooled_per_s": pooled["emails_per_s"],
        "naive_per_s": naive["emails_per_s"],
        "speedup": round(pooled["emails_per_s"] / max(naive["emails_per_s"], 0.001), 2),
        "pooled": pooled,
        "naive": naive,
    }


def bench_all(n: int = 2000) -> dict[str, Any]:
    """Pooled vs naive through the send jobs, on plain SMTP and with STARTTLS, beside the bare-protocol ceiling.

    The naive STARTTLS runs send a quarter of ``n`` (a TLS handshake per email makes them long).
    ``raw_starttls.naive_context_per_connection`` is bare aiosmtplib's naive path with its default of
    a new TLS context per connection: the figure earlier versions of this bench compared against.
    """
    out: dict[str, Any] = {"emails": n, "chunk_size": Settings.from_env().mail_chunk_size}
    for tls in (False, True):
        label = "starttls" if tls else "plain"
        naive_n = max(n // 4, 100) if tls else n
        out[label] = _pair(bench_email(True, n, starttls=tls), bench_email(False, naive_n, starttls=tls))
        out[f"raw_{label}"] = _pair(bench_raw(True, n, starttls=tls), bench_raw(False, naive_n, starttls=tls))
        if tls:
            fresh = bench_raw(False, max(n // 10, 100), starttls=True, context_per_connection=True)
            out["raw_starttls"]["naive_context_per_connection"] = fresh
    for label in ("plain", "starttls"):
        out[label]["pooled_vs_raw_pooled"] = round(
            out[label]["pooled_per_s"] / max(out[f"raw_{label}"]["pooled_per_s"], 0.001), 2
        )
    return out


if __name__ == "__main__":
    figures = bench_all(int(sys.argv[1]) if len(sys.argv) > 1 else 2000)
    print(json.dumps(figures, indent=2))
