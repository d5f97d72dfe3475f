"""The published OpenAPI document is the one the code generates."""

from service.openapi_export import PUBLISHED, render


def test_published_openapi_is_current() -> None:
    assert PUBLISHED.exists(), "run: python -m service.openapi_export"
    assert PUBLISHED.read_bytes() == render(), (
        "openapi/openapi.json is stale; regenerate with: python -m service.openapi_export")
