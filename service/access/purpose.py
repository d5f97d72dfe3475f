"""Why a request is made (purpose of use): from the token, or the default of the caller's role.

It is recorded in every AuditEvent (`purposeOfEvent`, IHE BALP) and decides whether a Consent
provision that names purposes applies (`provisions`). A token may state it in the claim
configured in `profiles/rules/access-rules.json` (IHE IUA and the HL7 security IGs call it
`purpose_of_use`); the rules file also holds a default per role, so every request has one.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .provisions import Coding, rules

if TYPE_CHECKING:
    from .principal import Principal


def _config() -> dict[str, Any]:
    config: dict[str, Any] = rules()["purposeOfUse"]
    return config


def parse_claim(value: Any) -> tuple[Coding, ...]:
    """A purpose-of-use claim as codings: a code, `system|code`, a {system, code} object (IHE
    IUA), or a list of those. Anything else states no purpose."""
    items = value if isinstance(value, list) else [value]
    default_system = _config()["defaultSystem"]
    out: list[Coding] = []
    for item in items:
        if isinstance(item, str) and item.strip():
            system, sep, code = item.strip().rpartition("|")
            out.append((system if sep else default_system, code))
        elif isinstance(item, dict) and isinstance(item.get("code"), str) and item["code"]:
            stated = item.get("system")
            out.append((stated if isinstance(stated, str) else None, item["code"]))
    return tuple(out)


def claimed_purposes(claims: dict[str, Any]) -> tuple[Coding, ...]:
    """The purposes a token's claims state: the configured claim at the top level, or inside
    IHE IUA's `extensions.ihe_iua`."""
    name = _config()["claim"]
    if name in claims:
        return parse_claim(claims[name])
    extensions = claims.get("extensions")
    iua = extensions.get("ihe_iua") if isinstance(extensions, dict) else None
    return parse_claim(iua.get(name)) if isinstance(iua, dict) else ()


def _role_default(principal: Principal) -> dict[str, Any] | None:
    by_role: dict[str, Any] = _config()["byRole"]
    if principal.role in by_role:
        return dict(by_role[principal.role])
    if principal.is_patient:
        return dict(by_role["patient"])
    return None


def request_purposes(principal: Principal) -> frozenset[Coding]:
    """The purposes the request is made for; empty when neither token nor role says."""
    if principal.purposes:
        return frozenset(principal.purposes)
    default = _role_default(principal)
    return frozenset({(default["system"], default["code"])}) if default else frozenset()


def purpose_of_event(principal: Principal, representative: bool = False) -> list[dict[str, Any]]:
    """AuditEvent.purposeOfEvent: the token's purposes, or the role's default (a representative
    acting for the patient: power of attorney)."""
    if principal.purposes:
        return [{"coding": [{k: v for k, v in (("system", s), ("code", c)) if v}]}
                for s, c in principal.purposes]
    by_role: dict[str, Any] = _config()["byRole"]
    default = dict(by_role["representative"]) if representative else _role_default(principal)
    return [{"coding": [default]}] if default else []
