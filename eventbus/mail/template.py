"""Rendering email templates: ``templates/<name>/{subject.txt,body.txt,body.html}`` sharing ``base.html``.

Undefined variables are errors (never empty strings), HTML is autoescaped, CSS is inlined for mail
clients, and links are built from ``APP_URL`` with ``url('/path')``.
"""

from __future__ import annotations

import functools
import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import css_inline
import jinja2

from eventbus.errors import ConfigError, HeaderInjection, TemplateError, TemplateNotFound
from eventbus.settings import Settings, get_settings

PARTS = ("subject.txt", "body.txt", "body.html")
_NAME = re.compile(r"^[a-z][a-z0-9_]*$")
_BAD_HEADER_CHARS = ("\r", "\n", "\x00")


@dataclass(frozen=True)
class Rendered:
    """One email's rendered parts; ``html`` has its CSS inlined."""

    template: str
    subject: str
    text: str
    html: str


BUILT_IN_DIR = Path(__file__).resolve().parent.parent / "templates"


def template_dirs(settings: Settings | None = None) -> tuple[Path, ...]:
    """Where templates are looked up, in order: each EVENTBUS_TEMPLATES_DIR folder, then the built-in ones.

    Each file (``welcome/subject.txt``, ``base.html``) comes from the first folder that has it, so an app
    adds templates or overrides single files without losing the built-in ones.
    """
    return _resolve_dirs((settings or get_settings()).templates_dirs)


@functools.lru_cache(maxsize=8)
def _resolve_dirs(configured: tuple[str, ...]) -> tuple[Path, ...]:
    dirs = tuple(Path(d).expanduser().resolve() for d in configured)
    for missing in (d for d in dirs if not d.is_dir()):
        raise ConfigError(
            f"EVENTBUS_TEMPLATES_DIR names {missing}, which is not a folder; "
            f"create it or fix the path (separate several folders with {os.pathsep!r})"
        )
    return (*dirs, BUILT_IN_DIR)


def render_cached(name: str, context: Mapping[str, Any], settings: Settings | None = None) -> Rendered:
    """``render`` memoised on (template, context): the worker renders a bulk send's shared content once."""
    settings = settings or get_settings()
    try:
        key = json.dumps(context, sort_keys=True, separators=(",", ":"))
    except (TypeError, ValueError):
        return render(name, context, settings)
    return _render_memo(name, key, template_dirs(settings), settings.app_url)


@functools.lru_cache(maxsize=256)
def _render_memo(name: str, context_json: str, dirs: tuple[Path, ...], app_url: str) -> Rendered:
    return render(name, json.loads(context_json))


def available_templates(settings: Settings | None = None) -> list[str]:
    """Names of the templates whose three parts are found in the template folders."""
    dirs = template_dirs(settings)
    names = {p.name for root in dirs if root.is_dir() for p in root.iterdir() if p.is_dir() and _NAME.match(p.name)}
    return sorted(name for name in names if _complete(name, dirs))


def _complete(name: str, dirs: tuple[Path, ...]) -> bool:
    return all(any((root / name / part).is_file() for root in dirs) for part in PARTS)


def sample_context(name: str, settings: Settings | None = None) -> dict[str, Any]:
    """The template's ``sample.json`` (a context to preview it with), from the first folder that has one; else {}."""
    check_template(name, settings)
    for root in template_dirs(settings):
        path = root / name / "sample.json"
        if path.is_file():
            try:
                sample = json.loads(path.read_text(encoding="utf-8"))
            except ValueError as exc:
                raise TemplateError(f"{path} is not valid JSON ({exc}); fix it or remove it") from None
            if not isinstance(sample, dict):
                raise TemplateError(f"{path} must hold a JSON object (the template's context)")
            return sample
    return {}


def check_template(name: str, settings: Settings | None = None) -> None:
    """Raise TemplateNotFound unless ``name`` is a complete template folder."""
    dirs = template_dirs(settings)
    if isinstance(name, str) and _NAME.match(name) and _complete(name, dirs):
        return
    known = available_templates(settings)
    import difflib

    close = difflib.get_close_matches(str(name), known, n=1)
    hint = f"did you mean {close[0]!r}?" if close else f"known templates: {', '.join(known) or '(none)'}"
    raise TemplateNotFound(
        f"unknown email template {name!r} in {', '.join(map(str, dirs))}: {hint} "
        f"(a template is a folder with {', '.join(PARTS)}; EVENTBUS_TEMPLATES_DIR adds folders of your own)"
    )


def render(name: str, context: Mapping[str, Any], settings: Settings | None = None) -> Rendered:
    """Render template ``name`` with ``context``; raises TemplateNotFound, TemplateError or HeaderInjection."""
    settings = settings or get_settings()
    check_template(name, settings)
    envs = _environments(template_dirs(settings), settings.app_url)
    data = dict(context)
    subject = _render(envs[0], name, "subject.txt", data).strip()
    check_header_value("subject", subject, template=name)
    text = _render(envs[0], name, "body.txt", data)
    html = _INLINER.inline(_render(envs[1], name, "body.html", {"subject": subject, **data}))
    return Rendered(template=name, subject=subject, text=text, html=html)


def render_subject(name: str, context: Mapping[str, Any], settings: Settings | None = None) -> str:
    """Only the subject (cheap; used to check each recipient of a bulk send at call time)."""
    settings = settings or get_settings()
    envs = _environments(template_dirs(settings), settings.app_url)
    subject = _render(envs[0], name, "subject.txt", dict(context)).strip()
    check_header_value("subject", subject, template=name)
    return subject


def check_header_value(field: str, value: str, *, template: str | None = None) -> None:
    """Raise HeaderInjection if ``value`` holds CR, LF or NUL (header injection)."""
    if any(c in value for c in _BAD_HEADER_CHARS):
        where = f" rendered by template {template!r}" if template else ""
        raise HeaderInjection(
            f"{field}{where} contains a line break or NUL ({value[:60]!r}); header values must be one line: "
            "strip CR, LF and NUL from the value (or from the payload field that lands in it)"
        )


_INLINER = css_inline.CSSInliner(load_remote_stylesheets=False, keep_at_rules=True)


@functools.lru_cache(maxsize=8)
def _environments(dirs: tuple[Path, ...], app_url: str) -> tuple[jinja2.Environment, jinja2.Environment]:
    """(text, html) environments over the template folders: strict undefined, HTML autoescaped, url() from APP_URL."""

    def url(path: str = "/", **query: Any) -> str:
        link = app_url.rstrip("/") + "/" + str(path).lstrip("/")
        return f"{link}?{urlencode(query)}" if query else link

    out = []
    for autoescape in (False, True):
        env = jinja2.Environment(
            loader=jinja2.FileSystemLoader(dirs),
            undefined=jinja2.StrictUndefined,
            autoescape=autoescape,
            keep_trailing_newline=False,
            auto_reload=False,  # templates change with a deploy (and a worker restart), not while it runs
            trim_blocks=True,
            lstrip_blocks=True,
        )
        env.globals.update(url=url, app_url=app_url)
        out.append(env)
    return out[0], out[1]


def _render(env: jinja2.Environment, name: str, part: str, data: dict[str, Any]) -> str:
    try:
        return env.get_template(f"{name}/{part}").render(data)
    except jinja2.UndefinedError as exc:
        raise TemplateError(
            f"template {name}/{part}: {exc.message}; pass it in the context (variables given: "
            f"{', '.join(sorted(data)) or 'none'})"
        ) from None
    except jinja2.TemplateSyntaxError as exc:
        raise TemplateError(f"template {exc.filename or name + '/' + part} line {exc.lineno}: {exc.message}") from None
    except jinja2.TemplateError as exc:
        raise TemplateError(f"template {name}/{part} failed: {exc}") from None
