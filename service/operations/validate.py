"""$validate (R4 Resource-validate) at type and instance level, with an optional `profile`.

Type level validates the posted resource (the body, or the `resource` parameter of a
Parameters body); instance level validates the stored resource, read through the caller's
store, so it validates only what the caller may see. The answer is always an
OperationOutcome with status 200: the issues found, or one informational "ok".
The checks are those a write runs: FHIR structure, the profiles that apply (claimed, carried
code, or named by `profile`), UCUM units, our extensions, and a QuestionnaireResponse against
its Questionnaire (ours or one stored here).
"""

from __future__ import annotations

from typing import Any

from ..conformance.structure import validate_structure
from ..fhir.outcome import FhirError, Issue, bad_request, operation_outcome
from .params import conformance, mapping, text
from .registry import Operation, OperationCall, OperationResult

OK = Issue("informational", "ok", severity="information")


async def _subject(call: OperationCall) -> dict[str, Any]:
    if call.level == "instance":
        assert call.resource_type and call.id
        return (await call.store.read(call.resource_type, call.id)).json()
    body = call.body
    if body is not None and body.get("resourceType") == "Parameters":
        body = mapping(call, "resource")
    if not isinstance(body, dict):
        raise bad_request("POST the resource to validate, or a Parameters with 'resource'",
                          "resource")
    if body.get("resourceType") != call.resource_type:
        raise bad_request(f"resourceType '{body.get('resourceType')}' does not match the URL "
                          f"({call.resource_type})", "resourceType")
    return body


async def validate(call: OperationCall) -> OperationResult:
    engine = conformance(call)
    resource = await _subject(call)
    profile = text(call, "profile")
    if profile is not None and engine.validator.profile(profile) is None:
        raise FhirError(400, "not-supported", f"Profile {profile} is not known to this server",
                        "profile")
    if call.value("mode") == "delete":
        return OperationResult(operation_outcome([OK]))
    issues: list[Issue] = []
    try:
        validate_structure(resource)
    except FhirError as exc:
        issues += exc.issues
    if profile is not None:
        target = engine.validator.profile(profile)
        if target is not None and target.type != resource.get("resourceType"):
            issues.append(Issue("invalid", f"Profile {profile} constrains {target.type}, not "
                                f"{resource.get('resourceType')}", expression=["profile"]))
            profile = None
    questionnaire = None
    canonical = resource.get("questionnaire")
    if resource.get("resourceType") == "QuestionnaireResponse" and isinstance(canonical, str):
        questionnaire = await engine.find_questionnaire(call.store, call.runtime.parser, canonical)
        if questionnaire is None and engine.own(canonical.split("|")[0]):
            issues.append(Issue("not-found", f"Questionnaire {canonical} is not known",
                                expression=["QuestionnaireResponse.questionnaire"]))
    issues += engine.issues(resource, [profile] if profile else None, questionnaire)
    return OperationResult(operation_outcome(issues or [OK]))


OPERATIONS = [
    Operation("validate", frozenset({"type", "instance"}), validate,
              definition="https://pgo-work.nl/fhir/OperationDefinition/Resource-validate"),
]
