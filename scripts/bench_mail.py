"""Emails per second from one worker-equivalent to a local SMTP sink: pooled connections vs one per email.

``bench_email(pooled, n)`` enqueues ``n`` emails on a fresh Redis namespace, runs an in-process
Dramatiq worker (the real async send actor, 16 threads, like ``dramatiq eventbus.workers -t 16``)
against ``eventbus smtp-sink`` running in its own process, and times from worker start to the
last send record written. Run directly to print both figures as JSON.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import dramatiq
import redis

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from eventbus.app import install_extra_actors  # noqa: E402
from eventbus.broker import make_broker, set_broker  # noqa: E402
from eventbus.delivery import install_actors  # noqa: E402
from eventbus.mail import send_bulk_email  # noqa: E402
from eventbus.settings import Settings, set_settings  # noqa: E402

REDIS_URL = os.environ.get("EVENTBUS_BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")
THREADS = 16


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_port(port: int, timeout_s: float = 20) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"smtp-sink did not listen on {port}")


def _self_signed(folder: Path) -> list[str]:
    cert, key = folder / "sink.pem", folder / "sink.key"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1",
         "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )  # fmt: skip
    return ["--tls-cert", str(cert), "--tls-key", str(key)]


def bench_email(pooled: bool, n: int, *, starttls: bool = False) -> dict[str, Any]:
    """Send ``n`` emails through one worker-equivalent; returns emails/s.

    ``starttls=True`` makes the sink offer STARTTLS with a self-signed certificate and the client
    require it, as with real providers (port 587): each new connection then costs a TLS handshake.
    """
    port = _free_port()
    tmp = Path(tempfile.mkdtemp(prefix="bench-mail-"))
    tls_args = _self_signed(tmp) if starttls else []
    sink = subprocess.Popen(
        [sys.executable, "-c", "from eventbus.cli import run; run()", "smtp-sink", "--port", str(port), *tls_args],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    namespace = f"bench-mail-{uuid.uuid4().hex[:8]}"
    client = redis.Redis.from_url(REDIS_URL)
    settings = dataclasses.replace(
        Settings(),
        broker_url=REDIS_URL,
        namespace=namespace,
        smtp_host="127.0.0.1",
        smtp_port=port,
        smtp_from="bench@example.com",
        smtp_pool_size=THREADS if pooled else 0,
        smtp_starttls=starttls,
        smtp_verify_certs=False,
        default_subscribers=False,
    )
    # The email queue's production limits (5 at once, 10/s) would cap both sides; lift them here.
    settings = dataclasses.replace(
        settings,
        queues=tuple(
            dataclasses.replace(q, concurrency=None, rate_limit=None) if q.name == "email" else q
            for q in settings.queues
        ),
    )
    set_settings(settings)
    broker = make_broker(settings)
    set_broker(broker)
    install_actors(broker)
    install_extra_actors(broker)
    try:
        _wait_port(port)
        recipients = [f"user{i}@example.com" for i in range(n)]
        context = {"model_id": "m-1", "model_name": "Orca", "new_rank": 1, "old_rank": 2, "vote_count": 10}
        send_bulk_email("rank_update", recipients, context, priority="normal")
        worker = dramatiq.Worker(broker, worker_threads=THREADS, worker_timeout=100)
        start = time.perf_counter()
        worker.start()
        stats = f"{namespace}:mail:stats"
        deadline = time.monotonic() + max(60, n / 20)
        while int(client.hget(stats, "sent") or 0) < n and time.monotonic() < deadline:
            time.sleep(0.01)
        elapsed = time.perf_counter() - start
        sent = int(client.hget(stats, "sent") or 0)
        worker.stop()
        return {
            "pooled": pooled,
            "starttls": starttls,
            "emails": sent,
            "seconds": round(elapsed, 3),
            "emails_per_s": round(sent / elapsed, 1),
            "worker_threads": THREADS,
        }
    finally:
        sink.terminate()
        sink.wait(10)
        shutil.rmtree(tmp, ignore_errors=True)
        keys = list(client.scan_iter(f"{namespace}:*", count=1000))
        for i in range(0, len(keys), 500):
            client.delete(*keys[i : i + 500])
        set_broker(None)
        set_settings(None)


def bench_all(n: int = 2000) -> dict[str, Any]:
    """Pooled vs naive, on plain SMTP and with STARTTLS, in one run."""
    out: dict[str, Any] = {}
    for tls in (False, True):
        pooled_run = bench_email(True, n, starttls=tls)
        naive_run = bench_email(False, n, starttls=tls)
        label = "starttls" if tls else "plain"
        out[label] = {
            "pooled_per_s": pooled_run["emails_per_s"],
            "naive_per_s": naive_run["emails_per_s"],
            "speedup": round(pooled_run["emails_per_s"] / max(naive_run["emails_per_s"], 0.001), 2),
        }
    return out


if __name__ == "__main__":
    print(json.dumps(bench_all(int(sys.argv[1]) if len(sys.argv) > 1 else 2000), indent=2))
