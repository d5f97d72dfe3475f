"""Write the published OpenAPI document: `python -m service.openapi_export [path]`.

The document is generated from the routes themselves, and a test fails when the checked-in
copy under `openapi/` differs, so the published API can never drift from the code.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import orjson

from .config import PROJECT_ROOT, Settings
from .main import create_app

PUBLISHED = PROJECT_ROOT / "openapi" / "openapi.json"


def document() -> dict[str, Any]:
    spec: dict[str, Any] = create_app(Settings()).openapi()
    return spec


def render() -> bytes:
    return orjson.dumps(document(), option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS) + b"\n"


def main(argv: list[str]) -> int:
    target = Path(argv[1]) if len(argv) > 1 else PUBLISHED
    target.write_bytes(render())
    print(f"wrote {target}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
