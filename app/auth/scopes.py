"""SMART on FHIR scopes (App Launch 2.x; the v1 forms accepted): reading them, narrowing a
request to what a client was registered for, and what each route needs of them.

A resource scope is `<context>/<type>.<permissions>`: the context `patient`, `user` or
`system`; a FHIR type this server has, or `*`; the permissions a subset of `c r u d s`
(create, read, update, delete, search) in that order, or the v1 words `read` (= `rs`),
`write` (= `cud`) and `*` (= `cruds`). Granular scopes (`...?category=...`) are refused: the
server cannot filter by them, and ignoring the filter would grant more than was asked.

Other words a SMART or OpenID client sends (`openid`, `fhirUser`, `launch/patient`,
`offline_access`, ...) are tolerated in a token request and never grant access to anything.

Pure: no database, no HTTP. app/auth/rules.py gives every rule its `Needs`; app/auth/access.py
checks a scoped token against them (a token without scopes, made by an admin, is bounded by its
role alone).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Literal

# The FHIR resource types this server serves (app/fhir: the CapabilityStatement and Bulk Data
# export list the same four; tests/auth/test_scopes.py holds them to it).
RESOURCE_TYPES: tuple[str, ...] = ("Patient", "CarePlan", "Procedure", "Observation")
PERMISSIONS = "cruds"  # create, read, update, delete, search: a v2 scope's letters, in order
V1_PERMISSIONS = {"read": "rs", "write": "cud", "*": "cruds"}
CONTEXTS = ("patient", "user", "system")
Context = Literal["patient", "user", "system"]
# Scope words of SMART and OpenID Connect that carry no access to data: tolerated in a
# request, left out of what is granted.
NON_RESOURCE_WORDS = frozenset(
    {"openid", "fhirUser", "profile", "launch", "offline_access", "online_access"}
)
MAX_SCOPE_LENGTH = 1000  # the column's size (api_tokens.scope, oauth_clients.scope)

_WORD = re.compile(r"(patient|user|system)/(\*|[A-Za-z]+)\.([a-z]+|\*)(\?.*)?", re.DOTALL)


class InvalidScope(ValueError):
    """A scope word this server does not accept (malformed, an unknown type, granular)."""


@dataclass(frozen=True, slots=True)
class ResourceScope:
    """One resource scope: its context, type (or `*`) and permission letters (in order)."""

    context: Context
    resource_type: str
    permissions: str
    text: str  # as written (a v1 word stays v1 when granted unchanged)

    def grants(self, resource_type: str, permission: str) -> bool:
        return self.resource_type in ("*", resource_type) and permission in self.permissions

    def covers(self, other: ResourceScope) -> bool:
        """Whether this grants everything ``other`` grants."""
        return (
            self.context == other.context
            and self.resource_type in ("*", other.resource_type)
            and set(other.permissions) <= set(self.permissions)
        )


def _ordered(letters: Iterable[str]) -> str:
    wanted = set(letters)
    return "".join(letter for letter in PERMISSIONS if letter in wanted)


def parse_word(word: str) -> ResourceScope | None:
    """A resource scope, or None for a word that carries no access (`openid`, `launch/...`);
    InvalidScope for anything else."""
    if word in NON_RESOURCE_WORDS or word.startswith("launch/"):
        return None
    match = _WORD.fullmatch(word)
    if match is None:
        raise InvalidScope(f"`{word}` is not a SMART scope")
    context, resource_type, permissions, query = match.groups()
    if query is not None:
        raise InvalidScope(f"`{word}`: granular scopes (`?param=value`) are not supported")
    if resource_type != "*" and resource_type not in RESOURCE_TYPES:
        raise InvalidScope(f"`{word}`: this server has no {resource_type} resources")
    letters = V1_PERMISSIONS.get(permissions)
    if letters is None:
        if permissions != _ordered(permissions) or len(set(permissions)) != len(permissions):
            raise InvalidScope(
                f"`{word}`: permissions are `read`, `write`, `*` or letters of `cruds` in order"
            )
        letters = permissions
    return ResourceScope(context, resource_type, letters, word)  # type: ignore[arg-type]


def parse(scope: str) -> list[ResourceScope]:
    """The resource scopes of a space-separated scope string (InvalidScope on a bad word)."""
    found = (parse_word(word) for word in scope.split())
    return [resource for resource in found if resource is not None]


@lru_cache(maxsize=4096)
def _granted(scope: str) -> tuple[ResourceScope, ...]:
    """A token's scopes, read once per distinct string. A word that does not parse grants
    nothing (the server only ever stores scopes it issued, so none should)."""
    granted = []
    for word in scope.split():
        try:
            resource = parse_word(word)
        except InvalidScope:
            continue
        if resource is not None:
            granted.append(resource)
    return tuple(granted)


def missing(scope: str, *, patient_bound: bool, wanted: Iterable[tuple[str, str]]) -> str | None:
    """The first (type, permission) of ``wanted`` the token's ``scope`` does not grant, as
    `Type.p`, or None when it grants them all.

    A token bound to a patient uses `patient/` scopes (its data is that patient's); any other
    uses `system/` or `user/` scopes: a scope of another context grants that token nothing.
    """
    contexts = ("patient",) if patient_bound else ("system", "user")
    usable = [s for s in _granted(scope) if s.context in contexts]
    for resource_type, permission in sorted(wanted):
        if not any(s.grants(resource_type, permission) for s in usable):
            return f"{resource_type}.{permission}"
    return None


def narrow(requested: str, registered: str) -> str:
    """What a client asking for ``requested`` is granted, when it was registered for
    ``registered``: each requested resource scope cut down to the registered ones (never more
    than either), in the requested form where it is granted whole. InvalidScope when a word is
    not acceptable or nothing is left."""
    asked = parse(requested)
    allowed = parse(registered)
    granted: list[ResourceScope] = []
    for want in asked:
        for may in allowed:
            if want.context != may.context:
                continue
            if may.resource_type == "*":
                resource_type = want.resource_type
            elif want.resource_type in ("*", may.resource_type):
                resource_type = may.resource_type
            else:
                continue
            letters = _ordered(set(want.permissions) & set(may.permissions))
            if not letters:
                continue
            whole = resource_type == want.resource_type and letters == want.permissions
            text = want.text if whole else f"{want.context}/{resource_type}.{letters}"
            _keep(granted, ResourceScope(want.context, resource_type, letters, text))
    if not granted:
        raise InvalidScope("none of the requested scopes is within this client's registration")
    return " ".join(scope.text for scope in granted)


def _keep(granted: list[ResourceScope], new: ResourceScope) -> None:
    """Add ``new`` unless a kept scope covers it; drop the kept ones it covers."""
    if any(kept.covers(new) for kept in granted):
        return
    granted[:] = [kept for kept in granted if not new.covers(kept)]
    granted.append(new)


@lru_cache
def registered_scope_pattern(context: str = "system") -> str:
    """A JSON Schema pattern for a registered scope: space-separated `<context>/` resource
    scopes of this server's types, v2 letters in order or the v1 words."""
    subsets = sorted(
        (
            "".join(letter for i, letter in enumerate(PERMISSIONS) if mask >> i & 1)
            for mask in range(1, 2 ** len(PERMISSIONS))
        ),
        key=lambda letters: (-len(letters), letters),
    )
    permissions = "|".join([*subsets, "read", "write", r"\*"])
    types = "|".join([r"\*", *RESOURCE_TYPES])
    word = f"{context}/(?:{types})\\.(?:{permissions})"
    return f"^{word}(?: {word})*$"


def check_registered(scope: str, context: str = "system") -> None:
    """InvalidScope unless ``scope`` is what a client may be registered for: resource scopes of
    ``context``, separated by single spaces (exactly what registered_scope_pattern admits)."""
    if re.fullmatch(registered_scope_pattern(context), scope):
        return
    for word in scope.split(" "):
        resource = parse_word(word)  # InvalidScope saying what is wrong with the word
        if resource is None or resource.context != context:
            raise InvalidScope(f"`{word}`: a client is registered for `{context}/` scopes only")
    raise InvalidScope(f"must be `{context}/` scopes separated by single spaces")


# --- what a route needs ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Needs:
    """What a scoped token's scopes must grant to use a route, as (FHIR type, permission)
    pairs, every one of them required.

    - ``permissions``: fixed pairs (`Observation.s` for a search of observations).
    - ``types_named_by``: Bulk Data, whose types are the request's: read (`r`) of each type
      named by the query's `_type` (every type when it names none) or the path's
      `resource_type`, on top of ``permissions``.
    - ``administration``: no scope grants it; only a token without scopes (an admin's).
    A route without patient data needs nothing (``NO_DATA``).
    """

    permissions: frozenset[tuple[str, str]] = field(default_factory=frozenset)
    types_named_by: Literal["_type", "resource_type"] | None = None
    administration: bool = False

    def wanted(self, named: Sequence[str]) -> frozenset[tuple[str, str]]:
        """The pairs a request needs, given the values of ``types_named_by`` it carries."""
        if self.types_named_by is None:
            return self.permissions
        types = {name for value in named for name in value.split(",") if name in RESOURCE_TYPES}
        return self.permissions | {(name, "r") for name in types or RESOURCE_TYPES}

    def __str__(self) -> str:
        if self.administration:
            return "administration (no scope)"
        pairs = [f"{t}.{p}" for t, p in sorted(self.permissions)]
        if self.types_named_by is not None:
            pairs.append(f"read of the types in `{self.types_named_by}`")
        return " ".join(pairs) or "nothing (no patient data)"


def needs(*pairs: str) -> Needs:
    """``needs("Observation.s", "CarePlan.r")``: every one of these (type, permission)."""
    parsed = set()
    for pair in pairs:
        resource_type, _, permission = pair.partition(".")
        if resource_type not in RESOURCE_TYPES or len(permission) != 1:
            raise ValueError(f"not a type and one permission: {pair}")
        if permission not in PERMISSIONS:
            raise ValueError(f"not a permission: {pair}")
        parsed.add((resource_type, permission))
    return Needs(frozenset(parsed))


NO_DATA = Needs()  # no patient data (the catalogue, discovery): no scope needed
ADMINISTRATION = Needs(administration=True)  # tokens, clients, the audit trail
READ_EVERY_TYPE = needs(*(f"{resource_type}.r" for resource_type in RESOURCE_TYPES))
