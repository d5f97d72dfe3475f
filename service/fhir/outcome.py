"""One error type that carries an OperationOutcome, and one mapping from outcome to HTTP status.

Every layer raises `FhirError`; the REST layer turns it into a response in exactly one place.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

# FHIR issue-type codes (http://hl7.org/fhir/issue-type) we use, with their default status.
_STATUS_BY_CODE = {
    "invalid": 400,
    "structure": 400,
    "required": 400,
    "value": 400,
    "invariant": 400,
    "security": 403,
    "login": 401,
    "forbidden": 403,
    "not-found": 404,
    "deleted": 410,
    "not-supported": 400,
    "conflict": 409,
    "duplicate": 409,
    "multiple-matches": 412,
    "too-costly": 400,
    "too-long": 413,
    "processing": 422,
    "business-rule": 422,
    "exception": 500,
    "informational": 200,
}


@dataclass
class Issue:
    """One OperationOutcome.issue."""

    code: str
    diagnostics: str
    severity: str = "error"
    expression: list[str] = field(default_factory=list)
    location: list[str] = field(default_factory=list)
    """Where in a body that has no FHIRPath yet (an XML syntax error): `Line[3] Col[7]`."""

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "severity": self.severity,
            "code": self.code,
            "diagnostics": self.diagnostics,
        }
        if self.expression:
            out["expression"] = self.expression
        if self.location:
            out["location"] = self.location
        return out


def operation_outcome(issues: list[Issue]) -> dict[str, Any]:
    return {"resourceType": "OperationOutcome", "issue": [i.to_json() for i in issues]}


class FhirError(Exception):
    """A failure that the client must see as an OperationOutcome with `status`."""

    def __init__(
        self,
        status: int,
        code: str,
        diagnostics: str,
        expression: list[str] | str | None = None,
        issues: list[Issue] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(diagnostics)
        self.status = status
        if isinstance(expression, str):
            expression = [expression]
        self.issues = issues or [Issue(code, diagnostics, expression=expression or [])]
        self.headers = headers or {}

    @property
    def outcome(self) -> dict[str, Any]:
        return operation_outcome(self.issues)


def bad_request(diagnostics: str, expression: str | None = None, code: str = "invalid") -> FhirError:
    return FhirError(400, code, diagnostics, expression)


def not_found(diagnostics: str) -> FhirError:
    return FhirError(404, "not-found", diagnostics)


def status_for(code: str) -> int:
    return _STATUS_BY_CODE.get(code, 400)
