"""``eventbus serve`` as a real subprocess: refusals (exit 2, one line) and a real start on loopback."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.conftest import ROOT


def serve_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("EVENTBUS_")}
    return dict(env, PYTHONPATH=str(ROOT), EVENTBUS_DEFAULT_SUBSCRIBERS="0", **extra)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.parametrize(
    ("args", "env", "message"),
    [
        ([], {}, "EVENTBUS_ADMIN_TOKEN is not set"),
        (["--insecure-dev", "--host", "0.0.0.0"], {}, "--insecure-dev only binds loopback"),
        (["--insecure-dev", "--host", "192.168.1.10"], {"EVENTBUS_ADMIN_TOKEN": "t"}, "not '192.168.1.10'"),
    ],
    ids=["no-token", "insecure-on-all-interfaces", "insecure-on-a-lan-address"],
)
def test_serve_refuses_unsafe_starts_with_exit_2_and_one_line(args, env, message):
    done = subprocess.run(
        [sys.executable, "-m", "eventbus", "serve", "--port", str(free_port()), *args],
        capture_output=True, text=True, env=serve_env(EVENTBUS_BROKER_URL="memory://", **env), timeout=60,
    )  # fmt: skip
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], done.stderr


def start_serve(tmp_path: Path, args: list[str], **env: str) -> tuple[subprocess.Popen[bytes], str, Path]:
    port = free_port()
    log = tmp_path / "serve.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "eventbus", "serve", "--port", str(port), *args],
            env=serve_env(**env), stdout=out, stderr=subprocess.STDOUT, cwd=ROOT,
        )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        assert proc.poll() is None, log.read_text()
        try:
            if httpx.get(f"{url}/openapi.json", timeout=2).status_code == 200:
                return proc, url, log
        except httpx.TransportError:
            time.sleep(0.1)
    proc.kill()
    pytest.fail(f"eventbus serve did not answer within 30 s:\n{log.read_text()}")


def stop(proc: subprocess.Popen[bytes]) -> int:
    proc.send_signal(signal.SIGINT)
    try:
        return proc.wait(20)
    except subprocess.TimeoutExpired:
        proc.kill()
        return proc.wait(10)


@pytest.mark.redis
def test_serve_logs_its_broker_and_requires_the_token(tmp_path, settings, redis_client, namespace):
    # Given eventbus serve with a token, on this test's Redis namespace
    proc, url, log = start_serve(
        tmp_path,
        [],
        EVENTBUS_ADMIN_TOKEN="serve-token",
        EVENTBUS_BROKER_URL=settings.broker_url,
        EVENTBUS_NAMESPACE=namespace,
        EVENTBUS_SUBSCRIBERS="tests.apps.shop",
    )
    try:
        # Then /api needs the token, and a publish lands in Redis
        assert httpx.get(f"{url}/api/topics").status_code == 401
        auth = {"Authorization": "Bearer serve-token"}
        order = {"order_id": 1, "amount_cents": 5, "email": "a@example.com"}
        assert httpx.post(f"{url}/api/events/order.placed", json=order, headers=auth).status_code == 202
        assert redis_client.llen(f"{namespace}:events") == 1
    finally:
        assert stop(proc) == 0
    # And the start-up log names the broker
    assert f"broker RedisBroker redis://127.0.0.1:6379/0 namespace='{namespace}'" in log.read_text()


def test_insecure_dev_on_loopback_serves_without_a_token(tmp_path):
    proc, url, log = start_serve(tmp_path, ["--insecure-dev"], EVENTBUS_BROKER_URL="memory://")
    try:
        assert httpx.get(f"{url}/api/topics").status_code == 200
    finally:
        stop(proc)
    assert "/api is open" in log.read_text()
