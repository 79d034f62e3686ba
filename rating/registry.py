"""The one registry: pricing-model kind -> the class that prices it and the spec that validates it.

Adding a pricing model means writing its class (``rating.models``), its spec
(``rating.specs``), one entry here, and a worked example in ``docs/pricing.md``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import ClassVar, Protocol

from rating.models import FlatFee, Graduated, MinimumCommitment, Overage, Package, PerUnit, Volume
from rating.percentage import Percentage
from rating.specs import (
    ChargeSpec,
    FlatSpec,
    GraduatedSpec,
    MeteredSpec,
    MinimumSpec,
    OverageSpec,
    PackageSpec,
    PercentageSpec,
    PerUnitSpec,
    VolumeSpec,
)

__all__ = ["REGISTRY", "ModelKind", "kinds"]


class _Kinded(Protocol):
    kind: ClassVar[str]


@dataclass(frozen=True, slots=True)
class ModelKind:
    """A registry entry: the pricing class and the spec of one kind."""

    model: type[_Kinded]
    spec: type[ChargeSpec]

    @property
    def name(self) -> str:
        return self.model.kind

    @property
    def metered(self) -> bool:
        """Whether a charge of this kind prices a meter (and so must name one)."""
        return issubclass(self.spec, MeteredSpec)


REGISTRY: Mapping[str, ModelKind] = MappingProxyType(
    {
        entry.name: entry
        for entry in (
            ModelKind(PerUnit, PerUnitSpec),
            ModelKind(Graduated, GraduatedSpec),
            ModelKind(Volume, VolumeSpec),
            ModelKind(Package, PackageSpec),
            ModelKind(Overage, OverageSpec),
            ModelKind(Percentage, PercentageSpec),
            ModelKind(FlatFee, FlatSpec),
            ModelKind(MinimumCommitment, MinimumSpec),
        )
    }
)


def kinds() -> tuple[str, ...]:
    """Every model kind, in the order the docs present them."""
    return tuple(REGISTRY)
