"""EVENTBUS_TEMPLATES_DIR adds folders searched before the built-in templates, file by file."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from eventbus.errors import ConfigError, TemplateNotFound
from eventbus.mail.template import BUILT_IN_DIR, available_templates, render, sample_context, template_dirs
from eventbus.settings import Settings

BUILT_IN = sorted(p.name for p in BUILT_IN_DIR.iterdir() if p.is_dir())


def write(folder: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text(text)


def settings_with(*folders: Path) -> Settings:
    return Settings.from_env({"EVENTBUS_TEMPLATES_DIR": os.pathsep.join(map(str, folders))})


def test_an_app_folder_adds_a_template_and_overrides_single_files_keeping_every_built_in_one(tmp_path):
    # Given two app folders: the first overrides welcome's subject, the second adds "invoice" and also a subject
    first, second = tmp_path / "first", tmp_path / "second"
    write(first, {"welcome/subject.txt": "Hello {{ name }}, from the app"})
    write(second, {"welcome/subject.txt": "never used", "invoice/subject.txt": "Invoice {{ n }}",
                   "invoice/body.txt": "Paid: {{ n }}", "invoice/body.html": "<p>Paid: {{ n }}</p>"})  # fmt: skip
    settings = settings_with(first, second)
    # Then both folders come first, the built-in templates last, and every template is listed
    assert template_dirs(settings) == (first.resolve(), second.resolve(), BUILT_IN_DIR)
    assert available_templates(settings) == sorted([*BUILT_IN, "invoice"])
    # When welcome renders, Then its subject comes from the first folder and its bodies from the built-in one
    welcome = render("welcome", {"name": "Ada"}, settings)
    assert welcome.subject == "Hello Ada, from the app"
    assert "Ada" in welcome.text and welcome.html.lstrip().startswith("<")
    # and the app's own template renders inside the built-in base.html
    assert render("invoice", {"n": "A-7"}, settings).subject == "Invoice A-7"


def test_without_the_setting_only_the_built_in_templates_are_used():
    assert template_dirs(Settings()) == (BUILT_IN_DIR,)
    assert available_templates(Settings()) == BUILT_IN


def test_a_folder_that_does_not_exist_is_a_config_error_naming_it(tmp_path):
    with pytest.raises(ConfigError, match=r"EVENTBUS_TEMPLATES_DIR names .*nowhere.*not a folder"):
        template_dirs(settings_with(tmp_path / "nowhere"))


@pytest.mark.parametrize("name", BUILT_IN)
def test_every_built_in_template_renders_with_its_sample(name):
    sample = sample_context(name, Settings())
    assert sample == json.loads((BUILT_IN_DIR / name / "sample.json").read_text())
    assert render(name, sample, Settings()).subject


@pytest.mark.parametrize("name", ["../etc", "Welcome", "nope"])
def test_a_sample_of_an_unknown_template_is_refused(name):
    with pytest.raises(TemplateNotFound):
        sample_context(name, Settings())
