"""Declared topics: names, optional pydantic schemas, and payload validation at publish time."""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from blinker import signal
from pydantic import BaseModel, ValidationError

from eventbus.errors import (
    InvalidTopicName,
    PayloadInvalid,
    PayloadNotSerializable,
    TopicAlreadyDeclared,
    UnknownTopic,
)

_SEGMENT = r"[a-z][a-z0-9_]*"
_NAME = re.compile(rf"^{_SEGMENT}(\.{_SEGMENT})*$")

topic_declared = signal("eventbus.topic-declared", doc="A topic was declared (sender: the Topic).")

M = TypeVar("M", bound=type[BaseModel])


@dataclass(frozen=True)
class Topic:
    """A declared topic; ``schema`` is None for "any JSON object"."""

    name: str
    schema: type[BaseModel] | None = None
    description: str = ""

    def validate(self, payload: Mapping[str, Any] | BaseModel) -> dict[str, Any]:
        """The payload as a plain JSON-ready dict, or PayloadInvalid naming the field."""
        if self.schema is None:
            if isinstance(payload, BaseModel):
                return payload.model_dump(mode="json")
            if not isinstance(payload, Mapping):
                raise PayloadInvalid(
                    f"payload for {self.name!r} must be a JSON object (dict), got {type(payload).__name__}"
                )
            return dict(payload)
        try:
            model = self.schema.model_validate(payload)
        except ValidationError as exc:
            raise PayloadInvalid(f"payload for {self.name!r} is invalid: {_describe(exc)}") from None
        try:
            return model.model_dump(mode="json")
        except Exception as exc:  # pydantic raises several types for unserialisable values
            raise PayloadNotSerializable(f"payload for {self.name!r} cannot be written as JSON: {exc}") from None


_topics: dict[str, Topic] = {}


def validate_name(name: str, *, what: str = "topic") -> str:
    """Return ``name`` if it is lowercase dotted segments, else raise InvalidTopicName."""
    if not isinstance(name, str) or not _NAME.match(name):
        raise InvalidTopicName(
            f"invalid {what} name {name!r}: use lowercase dotted segments such as 'vote.created' "
            "(letters, digits and '_', each segment starting with a letter)"
        )
    return name


def declare_topic(name: str, schema: type[BaseModel] | None = None, *, description: str = "") -> Topic:
    """Declare a topic (idempotent for the same schema); payloads of a schemaless topic are any JSON object."""
    validate_name(name)
    existing = _topics.get(name)
    if existing is not None:
        if existing.schema is not schema and schema is not None and existing.schema is not None:
            raise TopicAlreadyDeclared(
                f"topic {name!r} is already declared with schema {existing.schema.__name__}; "
                f"declare it once, or give the new schema another topic name"
            )
        if existing.schema is not None or schema is None:
            return existing
    doc = (schema.__doc__ or "").strip() if schema is not None else ""
    declared = Topic(name=name, schema=schema, description=description or doc)
    _topics[name] = declared
    topic_declared.send(declared)
    return declared


def topic(name: str, *, description: str = "") -> Callable[[M], M]:
    """Class decorator: declare ``name`` with the decorated pydantic model as its payload schema."""

    def register(model: M) -> M:
        declare_topic(name, model, description=description)
        return model

    return register


def get_topic(name: str) -> Topic:
    """The declared topic, or UnknownTopic with a did-you-mean suggestion."""
    found = _topics.get(name)
    if found is not None:
        return found
    validate_name(name)
    close = difflib.get_close_matches(name, list(_topics), n=1, cutoff=0.6)
    hint = f"; did you mean {close[0]!r}?" if close else "; declare it with declare_topic() or @topic()"
    raise UnknownTopic(f"unknown topic {name!r}{hint}")


def all_topics() -> list[Topic]:
    """Every declared topic, sorted by name."""
    return [_topics[name] for name in sorted(_topics)]


def _describe(exc: ValidationError) -> str:
    parts = []
    for error in exc.errors()[:5]:
        field = ".".join(str(p) for p in error["loc"]) or "(payload)"
        parts.append(f"field {field!r}: {error['msg']}")
    return "; ".join(parts)
