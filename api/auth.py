"""Who is calling, and what they may see (pure).

Two kinds of bearer credential, both from a YAML file (``METERLINE_API_AUTH_FILE``)::

    api_keys:            # full access to one namespace: ingest, every meter, every invoice
      - name: ops
        key: ml_live_...
        namespace: default
    customer_tokens:     # self-service: one customer's usage and invoices, read-only
      - token: ml_cust_...
        namespace: default
        customer: acme

Decisions: no or unknown credential → 401 (with ``WWW-Authenticate: Bearer``); a valid
credential for another namespace, or a customer token asking for something that is not
its customer's → 403.  Credentials are compared in constant time.
"""

from __future__ import annotations

import hmac
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from api.problems import HttpProblem
from invoicing.customers import Customer
from schemas.documents import load_document
from schemas.errors import InvalidInput

__all__ = ["AuthConfig", "Principal", "authenticate", "load_auth", "parse_auth"]

_NAMESPACE = r"^[a-z0-9][a-z0-9_\-]{0,62}$"


class _ApiKey(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    name: str = Field(min_length=1)
    key: str = Field(min_length=16)
    namespace: str = Field(pattern=_NAMESPACE)


class _CustomerToken(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    token: str = Field(min_length=16)
    namespace: str = Field(pattern=_NAMESPACE)
    customer: str = Field(min_length=1)


class AuthConfig(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    api_keys: tuple[_ApiKey, ...] = ()
    customer_tokens: tuple[_CustomerToken, ...] = ()


@dataclass(frozen=True, slots=True)
class Principal:
    """An authenticated caller: an API key (``customer is None``) or a customer token."""

    name: str
    namespace: str
    customer: str | None = None

    @property
    def is_customer(self) -> bool:
        return self.customer is not None


def parse_auth(document: object, customers: Iterable[Customer] = ()) -> AuthConfig:
    """Validate an auth document; customer tokens must name a known customer."""
    try:
        config = AuthConfig.model_validate(document or {})
    except ValidationError as exc:
        raise InvalidInput.from_pydantic("auth config", exc.errors()) from None
    known = {c.id for c in customers}
    for index, token in enumerate(config.customer_tokens):
        if known and token.customer not in known:
            raise InvalidInput.single(
                "auth config",
                f"customer_tokens[{index}].customer",
                f"unknown customer {token.customer!r}",
                f"use one of {sorted(known)}",
            )
    secrets = [k.key for k in config.api_keys] + [t.token for t in config.customer_tokens]
    if len(set(secrets)) != len(secrets):
        raise InvalidInput.single(
            "auth config", "", "a credential is listed twice", "make each unique"
        )
    return config


def load_auth(path: str | Path, customers: Iterable[Customer] = ()) -> AuthConfig:
    return parse_auth(load_document(path, "auth config"), customers)


def _unauthenticated(detail: str) -> HttpProblem:
    return HttpProblem(
        401, "Unauthenticated", detail, headers={"WWW-Authenticate": 'Bearer realm="meterline"'}
    )


def bearer(header: str | None) -> str:
    """The token of an ``Authorization: Bearer <token>`` header; 401 if there is none."""
    scheme, _, token = (header or "").strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise _unauthenticated("send Authorization: Bearer <API key or customer token>")
    return token.strip()


def authenticate(config: AuthConfig, header: str | None) -> Principal:
    """The caller behind an Authorization header, or 401."""
    token = bearer(header).encode()
    found: Principal | None = None
    for key in config.api_keys:  # no early exit: timing does not tell which entry matched
        if hmac.compare_digest(key.key.encode(), token):
            found = Principal(key.name, key.namespace)
    for cust in config.customer_tokens:
        if hmac.compare_digest(cust.token.encode(), token):
            found = Principal(f"customer:{cust.customer}", cust.namespace, cust.customer)
    if found is None:
        raise _unauthenticated("the bearer token is not a known API key or customer token")
    return found


def require_namespace(principal: Principal, namespace: str) -> None:
    if principal.namespace != namespace:
        raise HttpProblem(
            403,
            "Forbidden",
            f"this credential is scoped to namespace {principal.namespace!r}; "
            f"this service serves {namespace!r}",
        )


def require_api_key(principal: Principal, action: str) -> None:
    """Customer tokens are read-only views of one customer; refuse anything else."""
    if principal.is_customer:
        raise HttpProblem(403, "Forbidden", f"a customer token cannot {action}; use an API key")


def require_customer(principal: Principal, customer_id: str) -> None:
    if principal.customer is not None and principal.customer != customer_id:
        raise HttpProblem(403, "Forbidden", "a customer token can read only its own customer")
