"""The error an OAuth 2.0 endpoint answers with (RFC 6749 5.2)."""

from __future__ import annotations


class OAuthError(Exception):
    """An RFC 6749 error response. `revoke_grant` is revoked after the failed transaction rolls
    back: replaying a used code or refresh token ends the whole authorization."""

    def __init__(self, error: str, description: str, status: int = 400,
                 revoke_grant: str | None = None) -> None:
        super().__init__(description)
        self.error = error
        self.description = description
        self.status = status
        self.revoke_grant = revoke_grant

    def body(self) -> dict[str, str]:
        return {"error": self.error, "error_description": self.description}
