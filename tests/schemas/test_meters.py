from pathlib import Path

import pytest

from schemas.errors import InvalidInput
from schemas.metering.definitions import Aggregation, load_meters, parse_meters
from schemas.metering.paths import MISSING, JsonPath

ROOT = Path(__file__).resolve().parents[2]


def test_demo_meters_load() -> None:
    meters = load_meters(ROOT / "deploy/demo/meters.yaml")
    assert meters.slugs() == {"api_calls", "llm_tokens", "storage_gb_hours"}
    assert meters.get("api_calls").aggregation is Aggregation.COUNT
    assert [m.slug for m in meters.by_event_type["llm.completion"]] == ["llm_tokens"]


def test_all_problems_reported_at_once() -> None:
    doc = {
        "meters": [
            {"slug": "Bad Slug", "event_type": "x", "aggregation": "SUM", "value_property": "$.v"},
            {"slug": "c", "event_type": "x", "aggregation": "COUNT", "value_property": "$.v"},
            {"slug": "s", "event_type": "x", "aggregation": "SUM"},
            {"slug": "p", "event_type": "x", "aggregation": "MEDIAN", "value_property": "$.v"},
            {"slug": "j", "event_type": "x", "aggregation": "MAX", "value_property": "v[*]"},
            {"slug": "s", "event_type": "y", "aggregation": "COUNT"},
        ]
    }
    with pytest.raises(InvalidInput) as caught:
        parse_meters(doc)
    text = str(caught.value)
    paths = [p.path for p in caught.value.problems]
    assert "meters[0].slug" in paths
    assert "meters[1]" in paths
    assert "takes no value_property" in text
    assert "meters[2]" in paths
    assert "needs value_property" in text
    assert "meters[3].aggregation" in paths
    assert "meters[4].value_property" in paths
    assert "meters[5].slug" in paths
    assert "duplicate slug" in text


def test_unknown_meter_names_the_known_ones() -> None:
    meters = load_meters(ROOT / "deploy/demo/meters.yaml")
    with pytest.raises(InvalidInput, match="api_calls"):
        meters.get("nope")


@pytest.mark.parametrize(
    ("path", "doc", "expected"),
    [
        ("$.a", {"a": 1}, 1),
        ("$.a.b", {"a": {"b": "x"}}, "x"),
        ("$.items[1].q", {"items": [{"q": 1}, {"q": 2}]}, 2),
        ("$['cost usd']", {"cost usd": 3}, 3),
        ('$["k"][0]', {"k": [9]}, 9),
        ("$.a.b", {"a": 1}, MISSING),
        ("$.items[5]", {"items": []}, MISSING),
        ("$.a[0]", {"a": "text"}, MISSING),
    ],
)
def test_jsonpath_subset(path: str, doc: object, expected: object) -> None:
    assert JsonPath.parse(path).find(doc) is expected or JsonPath.parse(path).find(doc) == expected


@pytest.mark.parametrize("path", ["a.b", "$", "$..a", "$.a[*]", "$.a[?(@.x)]"])
def test_jsonpath_rejects_unsupported(path: str) -> None:
    with pytest.raises(ValueError, match="JSONPath"):
        JsonPath.parse(path)


def test_paths_are_compiled_once_per_definition() -> None:
    meter = load_meters(ROOT / "deploy/demo/meters.yaml").get("llm_tokens")
    assert meter.value_path is meter.value_path
    assert meter.group_paths is meter.group_paths
    assert str(meter.value_path) == "$.tokens"
