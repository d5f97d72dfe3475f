"""Which elements of its context an invariant can read, so its result can be reused.

An invariant is a pure function of its context node when it reads no environment variable
(`%resource`, ...), no clock (`today()`, `now()`) and no other resource (`resolve()`). If we
also know every element name a path in it *starts* with at the context, its result depends
only on those elements of the node: the node cut down to them (`project`) is a faithful cache
key. Identifiers inside a method's argument (`.where(code = 'x')`, `.all($this >= 0)`) are read
on the items the method iterates, not on the context, so they do not widen the key. Anything
the scan cannot place (a function applied to the context itself, `$this` at the top level, a
type name, a quoted identifier) makes the invariant unscoped: it is then always evaluated.
"""

from __future__ import annotations

import re
from typing import Any

_TOKEN = re.compile(r"'(?:[^'\\]|\\.)*'|`[^`]*`|%[A-Za-z_]\w*|\$[a-z]+|[A-Za-z_]\w*|\d+(?:\.\d+)?|"
                    r"\S")
_KEYWORDS = frozenset({"and", "or", "xor", "implies", "in", "contains", "is", "as", "div", "mod",
                       "true", "false"})
_UNSAFE_FUNCTIONS = frozenset({"today", "now", "timeOfDay", "resolve", "descendants",
                               "children", "repeat", "trace", "conformsTo", "memberOf"})
_ROOT_FUNCTIONS = frozenset({"extension"})
"""Functions that may stand at the start of a path: `extension('url')` reads the context's
`extension` element with a literal argument."""


def context_roots(expression: str) -> frozenset[str] | None:
    """The element names paths in `expression` start with at the context; None when the
    invariant may depend on more than those (then it must always be evaluated)."""
    tokens = _TOKEN.findall(expression)
    roots: set[str] = set()
    stack: list[str] = []  # kind of each open parenthesis: "method", "group" or "root-fn"
    prev = ""
    for i, tok in enumerate(tokens):
        nxt = tokens[i + 1] if i + 1 < len(tokens) else ""
        in_item = "method" in stack
        if tok.startswith("%") or tok.startswith("`"):
            return None
        if tok == "(":
            if prev == ")" or (prev and (prev[0].isalpha() or prev[0] == "_")
                                and prev not in _KEYWORDS):
                before = tokens[i - 2] if i >= 2 else ""
                stack.append("method" if before == "." else "root-fn")
            else:
                stack.append("group")
        elif tok == ")":
            if stack:
                stack.pop()
        elif tok.startswith("$"):
            if not in_item and "root-fn" not in stack:
                return None  # $this of the context: the whole node
        elif tok[0].isalpha() or tok[0] == "_":
            if nxt == "(" and tok in _UNSAFE_FUNCTIONS:
                return None
            if prev == "." or tok in _KEYWORDS or prev in ("is", "as"):
                pass
            elif in_item:
                pass  # a path on the items a method iterates
            elif nxt == "(":
                if tok not in _ROOT_FUNCTIONS:
                    return None
                roots.update(("extension", "modifierExtension"))
            elif "root-fn" in stack:
                return None
            elif tok[0].isupper():
                return None  # a type or resource name: not placed
            else:
                roots.add(tok)
        prev = tok
    return frozenset(roots)


def project(node: dict[str, Any], roots: frozenset[str]) -> dict[str, Any]:
    """`node` cut down to the elements the roots name (choice keys included: `value` keeps
    `valueQuantity`), and its resourceType, which typed navigation needs."""
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key == "resourceType" or key in roots or any(
                key[:i] in roots for i in range(1, len(key)) if key[i].isupper()):
            out[key] = value
    return out
