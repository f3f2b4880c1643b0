"""Schemathesis against the served OpenAPI: no 5xx, no undocumented status code (issue 6, acceptance 2, partly).

The run uses schemathesis' own CLI (bounded: 40 examples per operation, fixed seed, loopback only)
against a real uvicorn server, with every check it has. A second and third run pin the path
parameters to a declared topic and a configured webhook source, so generated bodies reach the
publish and signature code instead of stopping at 404.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.admin.conftest import TOKEN

pytestmark = [pytest.mark.redis, pytest.mark.slow]

# A cursor is opaque: one made up by a client (schema-valid, any string) is a client error, 400.
OPAQUE_CURSOR = """
[[operations]]
include-path-regex = "/jobs$|/dead-letters$"
checks.positive_data_acceptance.expected-statuses = ["2xx", "400", "401", "404", "409"]
"""

# run name -> (config, checks left out). The OpenAPI body of /api/events/{topic} is "any JSON object": it cannot
# carry one topic's schema, so with the path pinned to order.placed a schema-valid body is often an invalid
# OrderPlaced, rightly 422; positive_data_acceptance is left out of that run only.
PINNED = {
    "free": ("", []),
    "schemaless-topic": (
        '[parameters]\n"path.topic" = "test.happened"\n"path.source" = "shopify"\n"path.queue" = "default"\n',
        [],
    ),
    "schema-topic": (
        '[parameters]\n"path.topic" = "order.placed"\n"path.source" = "billing-system"\n',
        ["--exclude-checks", "positive_data_acceptance"],
    ),
}


@pytest.mark.parametrize("pinned", list(PINNED))
def test_schemathesis_finds_no_server_error_and_no_undocumented_status(start_server, tmp_path: Path, pinned: str):
    # Given the admin app with the default 1 MiB body limit, a schemaless and a schema'd topic, and webhook sources
    server = start_server(modules=("tests.apps.shop", "tests.apps.recording"), max_body_bytes=1_048_576)
    config = tmp_path / "schemathesis.toml"
    text, excluded = PINNED[pinned]
    config.write_text(OPAQUE_CURSOR + text)
    # When schemathesis runs every phase and every check against /openapi.json
    run = subprocess.run(
        [
            sys.executable, "-m", "schemathesis.cli", "--config-file", str(config),
            "run", f"{server.url}/openapi.json",
            "-H", f"Authorization: Bearer {TOKEN}",
            "--checks", "all", "--max-examples", "40", "--seed", "20261123",
            "--request-timeout", "20", "--workers", "1", *excluded,
        ],
        cwd=tmp_path, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    # Then it finds nothing
    assert run.returncode == 0, run.stdout[-30000:] + run.stderr[-2000:]
    assert "passed" in run.stdout
