"""The ``eventbus`` command as a real subprocess: publish, topics, and one-line errors with exit 2."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.conftest import ROOT


def eventbus(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    full_env = dict(os.environ, PYTHONPATH=str(ROOT), EVENTBUS_DEFAULT_SUBSCRIBERS="0", **(env or {}))
    return subprocess.run(
        [sys.executable, "-m", "eventbus", *args], capture_output=True, text=True, env=full_env, timeout=60
    )


@pytest.mark.redis
def test_publish_prints_the_event_id_and_writes_one_event(settings, redis_client, namespace):
    env = {"EVENTBUS_BROKER_URL": settings.broker_url, "EVENTBUS_SUBSCRIBERS": "tests.apps.recording"}
    done = eventbus("--namespace", namespace, "publish", "test.happened", '{"n": 1}', "--priority", "high", env=env)
    assert done.returncode == 0, done.stderr
    event_id = done.stdout.strip()
    assert len(event_id) == 26
    assert redis_client.llen(f"{namespace}:events.p1") == 1


@pytest.mark.redis
@pytest.mark.parametrize(("given", "lane"), [("urgent", "p0"), ("1", "p0"), ("3", "p1"), ("15", "p3")])
def test_publish_takes_the_seeds_priority_names_and_numbers(settings, redis_client, namespace, given, lane):
    env = {"EVENTBUS_BROKER_URL": settings.broker_url, "EVENTBUS_SUBSCRIBERS": "tests.apps.recording"}
    done = eventbus("--namespace", namespace, "publish", "test.happened", "{}", "--priority", given, env=env)
    assert done.returncode == 0, done.stderr
    assert redis_client.llen(f"{namespace}:events.{lane}") == 1


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["publish", "test.happened", "{not json"], "PAYLOAD is not valid JSON"),
        (["publish", "test.hapened", "{}"], "did you mean 'test.happened'?"),
        (["publish", "Test.Happened", "{}"], "invalid topic name"),
        (["publish", "test.happened", "{}", "--priority", "asap"], "unknown priority 'asap'"),
        (["publish", "test.happened", "{}", "--priority", "21"], "unknown priority '21'"),
        (["no-such-command"], "No such command"),
    ],
)
def test_bad_usage_exits_2_with_one_line_on_stderr(args, message):
    env = {"EVENTBUS_BROKER_URL": "memory://", "EVENTBUS_SUBSCRIBERS": "tests.apps.recording"}
    done = eventbus(*args, env=env)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], done.stderr


def test_topics_lists_schemas_and_subscriptions_as_json():
    env = {"EVENTBUS_BROKER_URL": "memory://", "EVENTBUS_SUBSCRIBERS": "tests.apps.recording"}
    done = eventbus("topics", "--json", env=env)
    assert done.returncode == 0, done.stderr
    rows = {row["topic"]: row for row in json.loads(done.stdout)}
    assert [s["name"] for s in rows["test.happened"]["subscriptions"]] == ["first", "second", "third"]
    assert rows["test.happened"]["subscriptions"][1]["queue"] == "second"


def test_broker_down_exits_1_with_one_line():
    env = {"EVENTBUS_BROKER_URL": "redis://127.0.0.1:1/0", "EVENTBUS_SUBSCRIBERS": "tests.apps.recording"}
    done = eventbus("publish", "test.happened", "{}", env=env)
    assert done.returncode == 1
    assert done.stderr.count("\n") == 1 and "could not publish" in done.stderr
