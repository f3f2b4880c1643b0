"""``eventbus render`` and ``eventbus smtp-sink`` (issue 3)."""

from __future__ import annotations

import ctypes
import os
import signal
import smtplib
import subprocess
import sys
from email import message_from_bytes, policy
from pathlib import Path

import pytest

from eventbus.cli import main
from tests.conftest import ROOT, wait_for
from tests.smtp_server import free_port


def test_render_writes_an_eml_and_an_html_file(tmp_path: Path, capsys):
    # When a template is rendered with a context
    code = main(
        [
            "render",
            "vote_confirmation",
            "--context",
            '{"model_name": "Orca <b>", "model_id": 5}',
            "--out",
            str(tmp_path),
        ]
    )
    # Then an .eml (multipart) and an .html preview are written
    assert code == 0
    msg = message_from_bytes((tmp_path / "vote_confirmation.eml").read_bytes(), policy=policy.default)
    assert msg["Subject"] == "Thanks for voting for Orca <b>"
    assert msg.get_content_type() == "multipart/alternative"
    html = (tmp_path / "vote_confirmation.html").read_text()
    assert "Orca &lt;b&gt;" in html and "/models/5" in html
    assert "vote_confirmation.eml" in capsys.readouterr().out


def test_render_with_a_missing_variable_fails_with_one_clear_line(tmp_path: Path, capsys):
    code = main(["render", "vote_confirmation", "--context", '{"model_id": 5}', "--out", str(tmp_path)])
    assert code == 2
    err = capsys.readouterr().err
    assert "'model_name' is undefined" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "vote_confirmation.eml").exists()


def test_render_of_an_unknown_template_suggests_the_right_name(tmp_path: Path, capsys):
    assert main(["render", "vote_confirmaton", "--out", str(tmp_path)]) == 2
    assert "did you mean 'vote_confirmation'?" in capsys.readouterr().err


def test_smtp_sink_stores_each_message_and_prints_one_line(tmp_path: Path):
    # Given the sink running as its own process
    port = free_port()
    log = tmp_path / "sink.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-c", "from eventbus.cli import run; run()", "smtp-sink", "--port", str(port), "--dir", str(tmp_path / "mail")],
            cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, env=dict(os.environ, PYTHONUNBUFFERED="1"),
        )  # fmt: skip
    try:
        wait_for(lambda: "listening" in log.read_text(), 30)
        # When two messages are sent to it
        with smtplib.SMTP("127.0.0.1", port, timeout=10) as client:
            for n in range(2):
                client.sendmail("a@example.com", ["b@example.com"], f"Subject: hello {n}\r\n\r\nbody {n}\r\n")
        # Then each is stored as an .eml and printed on one line
        wait_for(lambda: len(list((tmp_path / "mail").glob("*.eml"))) == 2, 30)
        wait_for(lambda: log.read_text().count("subject=") == 2, 30)
        stored = sorted((tmp_path / "mail").glob("*.eml"))
        assert b"Subject: hello 0" in stored[0].read_bytes()
        assert "to=b@example.com subject='hello 1'" in log.read_text()
        # And it stops cleanly on Ctrl-C
        proc.send_signal(signal.SIGINT)
        assert proc.wait(10) == 0
    finally:
        reap(proc)


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_smtp_sink_stops_when_its_smtp_thread_takes_the_signal(tmp_path: Path, signum: int):
    # Given the sink running as its own process (a main thread and the SMTP server's thread)
    port = free_port()
    log = tmp_path / "sink.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-c", "from eventbus.cli import run; run()", "smtp-sink", "--port", str(port)],
            cwd=ROOT, stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        wait_for(lambda: "listening" in log.read_text(), 30)
        smtp_thread = min(int(t) for t in os.listdir(f"/proc/{proc.pid}/task") if int(t) != proc.pid)
        # When the kernel hands the stop signal to the SMTP thread rather than the main one
        assert ctypes.CDLL(None, use_errno=True).tgkill(proc.pid, smtp_thread, signum) == 0
        # Then the sink stops all the same, cleanly
        assert proc.wait(10) == 0, log.read_text()
    finally:
        reap(proc)


def reap(proc: subprocess.Popen[bytes]) -> None:
    """Kill ``proc`` if a failed test left it running (a live child fails the next test's setup)."""
    if proc.poll() is None:
        proc.kill()
        proc.wait()
