"""Customers and what they are billed on, from a YAML file.

```yaml
customers:
  - id: acme
    subjects: [acme-prod, acme-staging]   # default: [id]
    plan: pro
    currency: USD
```
A customer's usage is the sum of its subjects' usage, which is exact for additive meters
(SUM, COUNT).  Non-additive meters (UNIQUE_COUNT, MAX, MIN, AVG, LATEST) cannot be
combined across subjects, so a customer billed on one must have exactly one subject.
"""

from __future__ import annotations

from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from schemas.errors import InvalidInput

__all__ = ["Customer", "load_customers", "parse_customers"]


class Customer(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str = Field(min_length=1, max_length=128)
    subjects: tuple[str, ...] = ()
    plan: str = Field(min_length=1)
    currency: str = Field(pattern=r"^[A-Z]{3}$")

    @model_validator(mode="after")
    def _default_subject(self) -> Customer:
        if not self.subjects:
            object.__setattr__(self, "subjects", (self.id,))
        return self


class _File(BaseModel):
    model_config = ConfigDict(extra="forbid")
    customers: list[Customer]


def parse_customers(document: object) -> tuple[Customer, ...]:
    try:
        parsed = _File.model_validate(document)
    except ValidationError as exc:
        raise InvalidInput.from_pydantic("customers", exc.errors()) from None
    seen: dict[str, str] = {}
    for index, customer in enumerate(parsed.customers):
        for subject in customer.subjects:
            if subject in seen:
                raise InvalidInput.single(
                    "customers",
                    f"customers[{index}].subjects",
                    f"subject {subject!r} already belongs to customer {seen[subject]!r}",
                    "bill each subject to one customer",
                )
            seen[subject] = customer.id
    return tuple(parsed.customers)


def load_customers(path: str | Path) -> tuple[Customer, ...]:
    file = Path(path)
    try:
        document = yaml.safe_load(file.read_text(encoding="utf-8"))
    except OSError as exc:
        raise InvalidInput.single("customers", str(file), str(exc), "check the path") from None
    return parse_customers(document)
