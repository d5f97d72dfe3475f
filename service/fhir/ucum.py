"""A small UCUM reader that brings quantities to canonical units for comparison.

Why: `Observation?value-quantity=ge40|http://unitsofmeasure.org|h/wk` must also match a value
recorded as `2400 min/wk`. We cover the unit atoms work and health data use (time, mass,
length, volume, amount, percent, counts) with metric prefixes, products, quotients and
exponents. A unit outside this table is compared by its literal code only.
"""

from __future__ import annotations

import re
from functools import lru_cache

from .digits import is_digits

UCUM_SYSTEM = "http://unitsofmeasure.org"

# atom -> (factor to base, {base dimension: exponent})
_ATOMS: dict[str, tuple[float, dict[str, int]]] = {
    "1": (1.0, {}),
    "%": (0.01, {}),
    "s": (1.0, {"s": 1}),
    "min": (60.0, {"s": 1}),
    "h": (3600.0, {"s": 1}),
    "d": (86400.0, {"s": 1}),
    "wk": (604800.0, {"s": 1}),
    "mo": (2629800.0, {"s": 1}),
    "a": (31557600.0, {"s": 1}),
    "g": (1.0, {"g": 1}),
    "m": (1.0, {"m": 1}),
    "L": (0.001, {"m": 3}),
    "l": (0.001, {"m": 3}),
    "mol": (6.02214076e23, {}),
    "[iU]": (1.0, {"[iU]": 1}),
    "[IU]": (1.0, {"[iU]": 1}),
    "[lb_av]": (453.59237, {"g": 1}),
    "[in_i]": (0.0254, {"m": 1}),
    "Cel": (1.0, {"Cel": 1}),
    "mm[Hg]": (133.322, {"Pa": 1}),
    "kcal": (4184.0, {"J": 1}),
    "cal": (4.184, {"J": 1}),
}
_PREFIXES = {
    "Y": 1e24, "Z": 1e21, "E": 1e18, "P": 1e15, "T": 1e12, "G": 1e9, "M": 1e6, "k": 1e3,
    "h": 1e2, "da": 1e1, "d": 1e-1, "c": 1e-2, "m": 1e-3, "u": 1e-6, "n": 1e-9, "p": 1e-12,
}
_TERM_RE = re.compile(r"^(?P<atom>.+?)(?P<exp>-?\d+)?$")


def _atom(symbol: str) -> tuple[float, dict[str, int]] | None:
    if symbol in _ATOMS:
        return _ATOMS[symbol]
    for prefix in sorted(_PREFIXES, key=len, reverse=True):
        if symbol.startswith(prefix) and symbol[len(prefix):] in _ATOMS:
            factor, dims = _ATOMS[symbol[len(prefix):]]
            if not dims and symbol[len(prefix):] in ("1", "%"):
                return None
            return _PREFIXES[prefix] * factor, dims
    return None


def _term(term: str) -> tuple[float, dict[str, int]] | None:
    term = re.sub(r"\{[^}]*\}", "", term)
    if term == "":
        return 1.0, {}
    if is_digits(term):
        return float(term), {}
    m = _TERM_RE.match(term)
    if not m:
        return None
    atom = _atom(m["atom"])
    exp = int(m["exp"]) if m["exp"] else 1
    if atom is None:
        atom = _atom(term)
        exp = 1
        if atom is None:
            return None
    factor, dims = atom
    return factor**exp, {k: v * exp for k, v in dims.items()}


@lru_cache(maxsize=1024)
def canonical(code: str) -> tuple[float, str] | None:
    """(factor, canonical unit string) for a UCUM code, or None when we cannot read it."""
    if not code:
        return None
    parts = code.split("/")
    total = 1.0
    num: dict[str, int] = {}
    den: dict[str, int] = {}
    for index, part in enumerate(parts):
        if index == 0 and part == "":
            continue
        for term in part.split("."):
            parsed = _term(term)
            if parsed is None:
                return None
            factor, tdims = parsed
            total = total * factor if index == 0 else total / factor
            side = num if index == 0 else den
            for k, v in tdims.items():
                target, exp = (side, v) if v > 0 else ((den if side is num else num), -v)
                target[k] = target.get(k, 0) + exp
    # Numerator and denominator stay apart so that a rate (h/wk) never equals a ratio (%).
    def sig(d: dict[str, int]) -> str:
        return ".".join(f"{k}{v}" for k, v in sorted(d.items()) if v) or "1"

    unit = sig(num) if not den else f"{sig(num)}/{sig(den)}"
    return total, unit


def is_valid(code: str) -> bool:
    """True when the code is a UCUM expression we can read (used by profile validation)."""
    return canonical(code) is not None


def to_canonical(value: float, code: str) -> tuple[float, str] | None:
    parsed = canonical(code)
    if parsed is None:
        return None
    factor, unit = parsed
    return value * factor, unit
