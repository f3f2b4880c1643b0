"""deploy/: the systemd units, Dockerfile, compose file and Kubernetes manifests parse, name real
commands and options, stop no sooner than the workers' shutdown timeout, probe a real route, and
docs/deployment.md links each of them."""

from __future__ import annotations

import configparser
import functools
import json
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import yaml

from eventbus.cli import cli
from eventbus.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
UNITS = sorted((DEPLOY / "systemd").glob("*.service"))
SHUTDOWN_TIMEOUT_S = Settings().shutdown_timeout_s
EXIT_MARGIN_S = 5  # past the shutdown timeout a worker still requeues prefetched messages and exits


def read_unit(path: Path) -> configparser.ConfigParser:
    unit = configparser.ConfigParser(strict=False, interpolation=None, delimiters=("=",))
    unit.optionxform = str  # systemd keys are case-sensitive
    unit.read_string(path.read_text())
    return unit


def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    return loaded


def kubernetes() -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all((DEPLOY / "kubernetes.yaml").read_text()) if doc]


def deployment(name: str) -> dict[str, Any]:
    [found] = [d for d in kubernetes() if d["kind"] == "Deployment" and d["metadata"]["name"] == name]
    return found


def container(name: str) -> dict[str, Any]:
    [only] = deployment(name)["spec"]["template"]["spec"]["containers"]
    return only


def dockerfile_cmd() -> list[str]:
    [line] = [line for line in (DEPLOY / "Dockerfile").read_text().splitlines() if line.startswith("CMD ")]
    cmd: list[str] = json.loads(line.removeprefix("CMD "))
    return cmd


def commands() -> dict[str, list[str]]:
    """Every command line a deploy file runs, by where it is."""
    found = {f"{unit.name} ExecStart": shlex.split(read_unit(unit)["Service"]["ExecStart"]) for unit in UNITS}
    found["Dockerfile CMD"] = dockerfile_cmd()
    for name, service in compose()["services"].items():
        if "build" in service:  # the eventbus image, not redis
            found[f"compose {name}"] = list(service["command"])
    for name in ("eventbus-worker", "eventbus-serve"):
        found[f"kubernetes {name}"] = list(container(name)["command"])
    return found


def seconds(value: str | int) -> float:
    """'45', '45s', '1m30s' or 45 -> seconds (the forms systemd and compose take)."""
    if isinstance(value, int):
        return value
    parts = re.fullmatch(r"(?:(\d+)m)?\s*(?:(\d+)s?)?", value.strip())
    assert parts and value.strip(), f"not a duration: {value!r}"
    return int(parts.group(1) or 0) * 60 + int(parts.group(2) or 0)


def test_unit_files_have_unit_service_and_install_sections_and_an_absolute_exec_start():
    assert [u.name for u in UNITS] == ["eventbus-serve.service", "eventbus-worker.service"]
    for path in UNITS:
        unit = read_unit(path)
        assert {"Unit", "Service", "Install"} <= set(unit.sections()), path.name
        service = unit["Service"]
        assert service["ExecStart"].startswith("/"), f"{path.name}: systemd wants an absolute ExecStart"
        assert service["User"] not in ("", "root"), f"{path.name}: run as a dedicated user"
        assert service["Restart"] == "on-failure"
        assert service["WorkingDirectory"].startswith("/")
        assert service["EnvironmentFile"].startswith("/")


def test_the_worker_unit_signals_the_main_process_and_waits_past_the_shutdown_timeout():
    service = read_unit(DEPLOY / "systemd" / "eventbus-worker.service")["Service"]
    assert service["KillMode"] in ("mixed", "control-group")  # SIGKILL after TimeoutStopSec reaches every process
    assert seconds(service["TimeoutStopSec"]) >= SHUTDOWN_TIMEOUT_S + EXIT_MARGIN_S


def test_compose_and_kubernetes_stop_workers_no_sooner_than_the_shutdown_timeout():
    assert seconds(compose()["services"]["worker"]["stop_grace_period"]) >= SHUTDOWN_TIMEOUT_S + EXIT_MARGIN_S
    grace = deployment("eventbus-worker")["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
    assert grace >= SHUTDOWN_TIMEOUT_S + EXIT_MARGIN_S


def test_the_deploy_files_agree_on_the_shutdown_timeout_they_set():
    configmap = next(d for d in kubernetes() if d["kind"] == "ConfigMap")
    assert float(configmap["data"]["EVENTBUS_SHUTDOWN_TIMEOUT_S"]) == SHUTDOWN_TIMEOUT_S
    assert float(compose()["x-env"]["EVENTBUS_SHUTDOWN_TIMEOUT_S"]) == SHUTDOWN_TIMEOUT_S


def test_compose_runs_a_persistent_redis_and_points_eventbus_at_it():
    services = compose()["services"]
    assert {"redis", "worker", "serve"} <= set(services)
    redis_args = services["redis"]["command"]
    assert redis_args[redis_args.index("--appendonly") + 1] == "yes"
    for name in ("worker", "serve"):
        assert services[name]["environment"]["EVENTBUS_BROKER_URL"] == "redis://redis:6379/0"
    assert "EVENTBUS_ADMIN_TOKEN" in services["serve"]["environment"]


def test_the_image_runs_as_a_non_root_user_and_stops_on_sigterm():
    lines = (DEPLOY / "Dockerfile").read_text().splitlines()
    assert [line for line in lines if line.startswith("FROM ")] == ["FROM python:3.11-slim"]
    users = [line.split()[1] for line in lines if line.startswith("USER ")]
    assert users and users[-1] not in ("root", "0")
    assert "STOPSIGNAL SIGTERM" in lines
    for line in lines:  # what it copies exists in the checkout (built from the repository root)
        if line.startswith("COPY "):
            for source in line.split()[1:-1]:
                assert (ROOT / source).exists(), line


@functools.cache
def listed_commands() -> frozenset[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("EVENTBUS_", "REDIS_"))}
    done = subprocess.run(
        [sys.executable, "-m", "eventbus", "--help"], cwd=ROOT, env=env, capture_output=True, text=True, check=True
    )
    listing = done.stdout.split("Commands:", 1)[1]
    return frozenset(line.split()[0] for line in listing.splitlines() if line.startswith("  ") and line.split())


@pytest.mark.parametrize("where", sorted(commands()))
def test_each_command_exists_and_accepts_its_options(where):
    argv = commands()[where]
    program = Path(argv[0]).name
    assert program in ("eventbus", "dramatiq"), f"{where}: runs {argv[0]!r}"
    if program == "dramatiq":
        assert argv[1] == "eventbus.workers", where
        return
    name, args = argv[1], argv[2:]
    assert name in listed_commands(), f"{where}: `eventbus {name}` is not listed by `eventbus --help`"
    command = cli.commands[name]
    known = {opt for param in command.params for opt in (*param.opts, *param.secondary_opts)}
    for arg in args:
        if arg.startswith("-"):
            assert arg in known, f"{where}: `eventbus {name}` has no option {arg}"
    command.make_context(name, list(args))  # the values parse too (types, ranges)


def test_the_worker_module_they_run_imports(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("EVENTBUS_", "REDIS_"))}
    env["PYTHONPATH"] = str(ROOT)
    subprocess.run([sys.executable, "-c", "import eventbus.workers"], cwd=tmp_path, env=env, check=True, timeout=60)


def probed_paths() -> set[str]:
    serve = container("eventbus-serve")
    paths = {serve["readinessProbe"]["httpGet"]["path"], serve["livenessProbe"]["httpGet"]["path"]}
    check = " ".join(compose()["services"]["serve"]["healthcheck"]["test"])
    return paths | set(re.findall(r"http://[^/]+(/[\w/.-]*)", check))


@pytest.mark.slow
def test_serve_as_deployed_answers_every_health_check_and_probe_without_a_token(tmp_path):
    # Given `eventbus serve` as the deploy files run it, on loopback and a free port, with a token set
    assert "/api/health" in probed_paths()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    argv = list(container("eventbus-serve")["command"])
    argv[argv.index("--host") + 1], argv[argv.index("--port") + 1] = "127.0.0.1", str(port)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("EVENTBUS_", "REDIS_"))}
    env.update(PYTHONPATH=str(ROOT), EVENTBUS_ADMIN_TOKEN="deploy-test-token")
    server = subprocess.Popen(
        [sys.executable, "-m", "eventbus", *argv[1:]], cwd=tmp_path, env=env,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert server.poll() is None and time.monotonic() < deadline, "eventbus serve did not start"
                time.sleep(0.1)
        # When every probed path is asked without a token
        for path in sorted(probed_paths()):
            with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as answer:
                # Then it answers 200 (health: degraded, as no worker runs, is still 200)
                assert answer.status == 200, path
    finally:
        server.send_signal(signal.SIGTERM)
        out, _ = server.communicate(timeout=30)
    assert "Application startup complete" in out, out[-3000:]


def test_the_probe_port_is_the_port_serve_listens_on():
    serve = container("eventbus-serve")
    port = int(serve["command"][serve["command"].index("--port") + 1])
    assert [p["containerPort"] for p in serve["ports"] if p["name"] == "http"] == [port]


def test_the_deployment_page_links_every_deploy_file_and_names_only_real_commands():
    page = (ROOT / "docs" / "deployment.md").read_text()
    files = [p for p in DEPLOY.rglob("*") if p.is_file() and not p.name.startswith(".")]
    assert files
    for path in files:
        assert f"](../{path.relative_to(ROOT)})" in page, f"docs/deployment.md does not link {path}"
    named = set(re.findall(r"(?<![\w./-])eventbus ([a-z][a-z-]+)", page))
    assert named <= listed_commands(), named - listed_commands()
