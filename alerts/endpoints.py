"""Where webhooks go: the endpoints file (``METERLINE_WEBHOOKS_FILE``), validated at load.

::

    endpoints:
      - id: ops-pager                 # names the endpoint in the delivery log
        url: https://hooks.example.com/meterline
        secret: whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw   # made by new_secret(); see docs/api.md
        types: [alert.threshold_reached]                  # optional; default: every type

Every problem of the file is reported at once, each with its path (``endpoints.1.url``)
and the fix.  The file holds secrets: keep it readable only by the services, like the
API's auth file.  An empty setting means no endpoints: notifications then go only to the
Kafka topic.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from pydantic_core import PydanticCustomError

from alerts.notifications import NotificationType
from alerts.webhooks import decode_secret
from schemas.documents import load_document
from schemas.errors import InvalidInput, Problem

__all__ = ["WebhookEndpoint", "load_endpoints", "parse_endpoints", "subscribed"]

WHAT = "webhooks file"
_ID = re.compile(r"[a-z0-9][a-z0-9_\-]{0,62}")


@dataclass(frozen=True, slots=True)
class WebhookEndpoint:
    """One receiver: its id (in the delivery log), URL, secret and the types it takes."""

    id: str
    url: str
    secret: str
    types: frozenset[NotificationType] = frozenset(NotificationType)

    def __repr__(self) -> str:  # never print the secret
        return f"WebhookEndpoint(id={self.id!r}, url={self.url!r})"

    def takes(self, kind: NotificationType) -> bool:
        return kind in self.types


class _Endpoint(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    id: str
    url: str
    secret: str
    types: tuple[str, ...] | None = Field(default=None, min_length=1)

    @field_validator("id")
    @classmethod
    def _id(cls, value: str) -> str:
        if not _ID.fullmatch(value):
            raise _error(
                f"{value!r} is not 1 to 63 lower-case letters, digits, _ or -",
                "e.g. ops-pager",
            )
        return value

    @field_validator("url")
    @classmethod
    def _http_url(cls, url: str) -> str:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise _error(
                f"{url!r} is not an http:// or https:// URL with a host",
                "e.g. https://hooks.example.com/meterline",
            )
        return url

    @field_validator("types")
    @classmethod
    def _types(cls, types: tuple[str, ...] | None) -> tuple[str, ...] | None:
        known = [t.value for t in NotificationType]
        for kind in types or ():
            if kind not in known:
                raise _error(f"unknown notification type {kind!r}", f"use some of {known}")
        return types


def _error(message: str, fix: str) -> PydanticCustomError:
    return PydanticCustomError("value_error", message, {"fix": fix})


class _File(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    endpoints: tuple[_Endpoint, ...] = ()


def parse_endpoints(document: object) -> tuple[WebhookEndpoint, ...]:
    """Validate a webhooks document (``None``: no endpoints)."""
    try:
        parsed = _File.model_validate(document or {})
    except ValidationError as exc:
        raise InvalidInput.from_pydantic(WHAT, exc.errors()) from None
    problems: list[Problem] = []
    seen: set[str] = set()
    for index, entry in enumerate(parsed.endpoints):
        if entry.id in seen:
            problems.append(
                Problem(f"endpoints.{index}.id", f"{entry.id!r} is listed twice", "make it unique")
            )
        seen.add(entry.id)
        try:
            decode_secret(entry.secret, f"endpoints.{index}.secret")
        except InvalidInput as exc:
            problems.extend(exc.problems)
    if problems:
        raise InvalidInput(WHAT, problems)
    return tuple(_endpoint(entry) for entry in parsed.endpoints)


def _endpoint(entry: _Endpoint) -> WebhookEndpoint:
    types = frozenset(map(NotificationType, entry.types or NotificationType))
    return WebhookEndpoint(entry.id, entry.url, entry.secret, types)


def load_endpoints(path: str | Path) -> tuple[WebhookEndpoint, ...]:
    """The endpoints of the file at ``path``; none when ``path`` is empty."""
    if not str(path):
        return ()
    return parse_endpoints(load_document(path, WHAT))


def subscribed(
    endpoints: Iterable[WebhookEndpoint], kind: NotificationType
) -> list[WebhookEndpoint]:
    """The endpoints that take notifications of ``kind``."""
    return [endpoint for endpoint in endpoints if endpoint.takes(kind)]
