"""The registry is the one map from model kind to pricing class and spec."""

from __future__ import annotations

from rating import REGISTRY, kinds
from rating.specs import MeteredSpec


def test_every_kind_maps_to_its_class_and_spec() -> None:
    assert kinds() == (
        "per_unit",
        "graduated",
        "volume",
        "package",
        "overage",
        "percentage",
        "flat",
        "minimum",
    )
    for name, entry in REGISTRY.items():
        assert entry.model.kind == name
        assert entry.spec.__name__.endswith("Spec")


def test_only_flat_and_minimum_have_no_meter() -> None:
    unmetered = {name for name, entry in REGISTRY.items() if not entry.metered}
    assert unmetered == {"flat", "minimum"}
    assert all(issubclass(REGISTRY[k].spec, MeteredSpec) for k in set(kinds()) - unmetered)
