"""Meter definitions: what to count, from which events, and how to aggregate it.

A meter reads events of one ``event_type``, extracts a value with a JSONPath into the
event's ``data`` and aggregates it per subject and group-by values into one-minute
windows.  Every aggregation kind is kept as mergeable state in ClickHouse, so coarser
windows (hour, day, month in any timezone) are computed exactly from the minute windows.

Definitions are loaded from YAML (``meters: [...]``) and validated at load time; every
problem is reported at once with its path.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from enum import StrEnum
from functools import cached_property
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from schemas.documents import load_document
from schemas.errors import InvalidInput, Problem
from schemas.metering.paths import JsonPath

__all__ = ["Aggregation", "MeterDefinition", "MeterSet", "load_meters", "parse_meters"]

SLUG = re.compile(r"^[a-z0-9][a-z0-9_\-]{0,62}$")


class Aggregation(StrEnum):
    SUM = "SUM"
    COUNT = "COUNT"
    UNIQUE_COUNT = "UNIQUE_COUNT"
    MAX = "MAX"
    MIN = "MIN"
    AVG = "AVG"
    LATEST = "LATEST"


class MeterDefinition(BaseModel):
    """One meter, as written in the meters file."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    slug: str
    event_type: str = Field(min_length=1)
    aggregation: Aggregation
    value_property: str | None = None
    group_by: dict[str, str] = Field(default_factory=dict)
    description: str | None = None
    unit: str | None = None

    @field_validator("slug")
    @classmethod
    def _slug(cls, value: str) -> str:
        if not SLUG.match(value):
            raise ValueError(
                "slug must be 1-63 chars of a-z, 0-9, '_' or '-', starting with a letter or digit"
            )
        return value

    @field_validator("value_property")
    @classmethod
    def _value_path(cls, value: str | None) -> str | None:
        if value is not None:
            JsonPath.parse(value)
        return value

    @field_validator("group_by")
    @classmethod
    def _group_paths(cls, value: dict[str, str]) -> dict[str, str]:
        for name, path in value.items():
            if not re.match(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$", name):
                raise ValueError(f"group-by name {name!r} must be an identifier like 'region'")
            try:
                JsonPath.parse(path)
            except ValueError as exc:
                raise ValueError(f"group_by.{name}: {exc}") from None
        return value

    @model_validator(mode="after")
    def _value_needed(self) -> MeterDefinition:
        if self.aggregation is Aggregation.COUNT and self.value_property is not None:
            raise ValueError("COUNT counts events and takes no value_property; remove it")
        if self.aggregation is not Aggregation.COUNT and self.value_property is None:
            raise ValueError(
                f"{self.aggregation.value} needs value_property, a JSONPath into data "
                "such as '$.tokens'"
            )
        return self

    # Compiled once per definition: the worker reads them for every event it meters.
    @cached_property
    def value_path(self) -> JsonPath | None:
        return JsonPath.parse(self.value_property) if self.value_property else None

    @cached_property
    def group_paths(self) -> dict[str, JsonPath]:
        return {name: JsonPath.parse(path) for name, path in sorted(self.group_by.items())}


class MeterSet:
    """The validated meters, indexed by slug and by event type."""

    def __init__(self, meters: Iterable[MeterDefinition]) -> None:
        self.meters: tuple[MeterDefinition, ...] = tuple(meters)
        self.by_slug: dict[str, MeterDefinition] = {m.slug: m for m in self.meters}
        by_type: dict[str, list[MeterDefinition]] = {}
        for meter in self.meters:
            by_type.setdefault(meter.event_type, []).append(meter)
        self.by_event_type: dict[str, tuple[MeterDefinition, ...]] = {
            k: tuple(v) for k, v in by_type.items()
        }

    def __iter__(self):  # type: ignore[no-untyped-def]
        return iter(self.meters)

    def __len__(self) -> int:
        return len(self.meters)

    def slugs(self) -> frozenset[str]:
        return frozenset(self.by_slug)

    def get(self, slug: str) -> MeterDefinition:
        try:
            return self.by_slug[slug]
        except KeyError:
            known = ", ".join(sorted(self.by_slug)) or "none"
            raise InvalidInput.single(
                "meter", "slug", f"unknown meter {slug!r}", f"use one of: {known}"
            ) from None


def parse_meters(document: Any, *, source: str = "meters") -> MeterSet:
    """Validate a ``{"meters": [...]}`` document; every problem is reported at once."""
    if not isinstance(document, Mapping) or not isinstance(document.get("meters"), list):
        raise InvalidInput.single(
            "meter definitions",
            source,
            "expected a mapping with a 'meters' list",
            "write 'meters:' followed by a list of meter definitions",
        )
    problems: list[Problem] = []
    meters: list[MeterDefinition] = []
    for index, raw in enumerate(document["meters"]):
        where = f"meters[{index}]"
        try:
            meters.append(MeterDefinition.model_validate(raw))
        except ValidationError as exc:
            problems.extend(InvalidInput.from_pydantic("meter", exc.errors(), where).problems)
    seen: set[str] = set()
    for index, raw in enumerate(document["meters"]):
        slug = raw.get("slug") if isinstance(raw, Mapping) else None
        if isinstance(slug, str) and slug in seen:
            problems.append(
                Problem(f"meters[{index}].slug", f"duplicate slug {slug!r}", "rename one of them")
            )
        if isinstance(slug, str):
            seen.add(slug)
    if problems:
        raise InvalidInput("meter definitions", problems)
    return MeterSet(meters)


def load_meters(path: str | Path) -> MeterSet:
    """Load and validate a meters YAML (or JSON) file."""
    return parse_meters(load_document(path, "meter definitions"), source=str(path))
