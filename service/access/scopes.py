"""SMART App Launch v2 scopes, parsed once into typed values.

Why typed: every decision about access (which types, which actions, whose compartment, which
granular filter) is made from these values, never from string matching scattered around.
A scope string we do not understand grants nothing; it is kept only so it can be reported.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import parse_qsl

CONTEXTS = ("patient", "user", "system")
PERMISSIONS = "cruds"
V1_PERMISSIONS = {"read": "rs", "write": "cud", "*": "cruds"}
"""SMART v1 `.read`, `.write` and `.*`, as the v2 permissions they stand for."""
SPECIAL = frozenset({"openid", "fhirUser", "profile", "launch", "launch/patient",
                     "launch/encounter", "offline_access", "online_access"})

_RESOURCE_RE = re.compile(
    r"^(?P<context>patient|user|system)/(?P<type>\*|[A-Z][A-Za-z]{0,63})"
    r"\.(?P<perm>[cruds]+|read|write|\*)(?:\?(?P<query>.+))?$")

ACTION_PERMISSION = {"read": "r", "vread": "r", "history": "r", "search": "s",
                     "create": "c", "update": "u", "patch": "u", "delete": "d"}
"""Which SMART permission each store action needs (history is a kind of read)."""


@dataclass(frozen=True)
class ResourceScope:
    """One `context/Type.perms?params` scope."""

    context: str
    resource_type: str
    """A resource type, or `*` for all."""
    permissions: frozenset[str]
    params: tuple[tuple[str, str], ...] = ()
    """Granular search criteria (`?category=...`): the scope covers only matching resources."""
    text: str = ""

    def covers_type(self, resource_type: str) -> bool:
        return self.resource_type in ("*", resource_type)

    def grants(self, resource_type: str, permission: str) -> bool:
        return permission in self.permissions and self.covers_type(resource_type)

    def within(self, other: ResourceScope) -> bool:
        """True when `other` allows everything this scope asks for (used to narrow requests)."""
        return (self.context == other.context and other.resource_type in ("*", self.resource_type)
                and self.permissions <= other.permissions
                and (not other.params or other.params == self.params))


@dataclass(frozen=True)
class ScopeSet:
    """Everything one token's `scope` says, split by meaning."""

    resources: tuple[ResourceScope, ...] = ()
    special: frozenset[str] = frozenset()
    """openid, fhirUser, launch/patient, offline_access, online_access, ... as requested."""
    unknown: tuple[str, ...] = ()
    """Scopes we do not understand: they grant nothing."""

    @property
    def launch_patient(self) -> bool:
        return "launch/patient" in self.special

    @property
    def wants_refresh(self) -> bool:
        return bool({"offline_access", "online_access"} & self.special)

    def in_context(self, *contexts: str) -> tuple[ResourceScope, ...]:
        return tuple(s for s in self.resources if s.context in contexts)

    def allows_any(self, permission: str) -> bool:
        return any(permission in s.permissions for s in self.resources)

    def to_string(self) -> str:
        """The scopes as granted, in a stable order, without the ones we do not understand."""
        words = [s.text for s in self.resources] + sorted(self.special)
        return " ".join(dict.fromkeys(words))

    def narrowed_to(self, allowed: ScopeSet) -> ScopeSet:
        """Only what `allowed` covers: a client or an account never gets more than it may."""
        return ScopeSet(
            resources=tuple(s for s in self.resources if any(s.within(a) for a in allowed.resources)),
            special=self.special & allowed.special,
        )

    def without_context(self, context: str) -> ScopeSet:
        return ScopeSet(tuple(s for s in self.resources if s.context != context), self.special)

    def only_context(self, context: str) -> ScopeSet:
        return ScopeSet(tuple(s for s in self.resources if s.context == context), frozenset())

    def without_special(self, *names: str) -> ScopeSet:
        return ScopeSet(self.resources, self.special - set(names))


def parse_resource_scope(text: str) -> ResourceScope | None:
    """A resource scope, or None when `text` is not one (malformed scopes grant nothing)."""
    m = _RESOURCE_RE.match(text)
    if m is None:
        return None
    perm = m["perm"]
    if perm in V1_PERMISSIONS:
        if m["query"]:
            return None  # granular parameters exist only in v2
        letters = V1_PERMISSIONS[perm]
    else:
        # v2 requires the letters in c-r-u-d-s order, each at most once.
        if "".join(sorted(perm, key=PERMISSIONS.index)) != perm or len(set(perm)) != len(perm):
            return None
        letters = perm
    params: tuple[tuple[str, str], ...] = ()
    if m["query"]:
        pairs = parse_qsl(m["query"], keep_blank_values=True)
        if not pairs or any(not k or not v for k, v in pairs):
            return None
        params = tuple(pairs)
    return ResourceScope(m["context"], m["type"], frozenset(letters), params, text)


def parse_scopes(text: str | None) -> ScopeSet:
    """Parse a space-separated `scope` value (RFC 6749 3.3)."""
    resources: list[ResourceScope] = []
    special: set[str] = set()
    unknown: list[str] = []
    for word in dict.fromkeys((text or "").split()):
        if word in SPECIAL:
            special.add(word)
            continue
        scope = parse_resource_scope(word)
        if scope is None:
            unknown.append(word)
        else:
            resources.append(scope)
    return ScopeSet(tuple(resources), frozenset(special), tuple(unknown))
