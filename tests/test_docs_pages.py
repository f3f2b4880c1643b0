"""The manual in docs/: the pages the README promises, and a performance page of current figures."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PAGES = ("guide", "email", "operations", "http", "configuration", "deployment", "testing", "performance",
         "architecture")  # fmt: skip


def test_every_page_of_the_manual_exists_and_the_readme_links_it():
    readme = (ROOT / "README.md").read_text()
    for page in PAGES:
        assert (ROOT / "docs" / f"{page}.md").is_file(), page
        assert f"(docs/{page}.md)" in readme, page


def test_the_performance_page_names_the_command_and_an_existing_commit_for_its_figures():
    text = (ROOT / "docs" / "performance.md").read_text()
    rows = re.findall(r"^\| [^|]+ \| `(scripts/bench[^`]*)` \| [^|]+ \| `([0-9a-f]{7,40})` \|$", text, re.M)
    assert rows, "the performance page has no table of command, date and commit"
    shallow = subprocess.run(["git", "rev-parse", "--is-shallow-repository"], cwd=ROOT, capture_output=True, text=True)
    for _command, commit in rows if shallow.stdout.strip() == "false" else []:  # a shallow clone lacks old commits
        found = subprocess.run(["git", "cat-file", "-e", f"{commit}^{{commit}}"], cwd=ROOT, check=False)
        assert found.returncode == 0, f"docs/performance.md names commit {commit}, which is not in this repository"
    assert not re.search(r"this evening|yesterday|measured and not kept:", text, re.I)
