"""Prepare a run of the SMART Bulk Data test suite (bdt) against a demo server: a backend
client key pair, the client's public JWKS (for `pgo-work add-client`), and bdt's config.

Usage: bdt_setup.py keys WORKDIR          (writes jwks.json and key.json)
       bdt_setup.py data WORKDIR BASE_URL CLIENT_ID OPERATOR_TOKEN
            (a Group of three demo patients, Consents of two of them for the client, config.js)

The client is a backend system (role ehr-system): like every caller who is not the patient it
sees only what the patients' Consents grant it, so the suite runs against consented data.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from joserfc.jwk import ECKey, KeySet


FHIR_JSON = "application/fhir+json"
MEMBERS = ("pat-anna", "pat-kees", "pat-ingrid")
CONSENTED = ("pat-anna", "pat-kees")


def keys(work: Path) -> None:
    key = ECKey.generate_key("P-384", parameters={"alg": "ES384", "use": "sig"}, auto_kid=True)
    (work / "jwks.json").write_text(json.dumps(KeySet([key]).as_dict(private=False)))
    (work / "key.json").write_text(json.dumps(key.as_dict(private=True)))


def _consent(patient: str, client_id: str) -> dict[str, object]:
    return {
        "resourceType": "Consent", "status": "active",
        "scope": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/consentscope",
                              "code": "patient-privacy"}]},
        "category": [{"coding": [{"system": "http://loinc.org", "code": "59284-0"}]}],
        "patient": {"reference": f"Patient/{patient}"},
        "dateTime": "2026-11-01T10:00:00+01:00",
        "policyRule": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode",
                                   "code": "OPTIN"}]},
        "provision": {"type": "deny", "provision": [{
            "type": "permit",
            "actor": [{"role": {"coding": [{
                "system": "http://terminology.hl7.org/CodeSystem/v3-ParticipationType",
                "code": "PRCP"}]}, "reference": {"reference": f"Device/{client_id}"}}],
            "action": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/consentaction",
                                    "code": "access"}]}]}]},
    }


def data(work: Path, base: str, client_id: str, token: str) -> None:
    import httpx

    headers = {"Authorization": f"Bearer {token}", "Content-Type": FHIR_JSON, "Accept": FHIR_JSON}
    with httpx.Client(base_url=base + "/", headers=headers, timeout=30) as http:
        group = http.post("Group", json={
            "resourceType": "Group", "type": "person", "actual": True, "name": "bdt cohort",
            "member": [{"entity": {"reference": f"Patient/{p}"}} for p in MEMBERS]})
        group.raise_for_status()
        for patient in CONSENTED:
            http.post("Consent", json=_consent(patient, client_id)).raise_for_status()
    config(work, base, client_id, group.json()["id"])


def config(work: Path, base: str, client_id: str, group: str) -> None:
    private = json.loads((work / "key.json").read_text())
    origin = base.rsplit("/fhir", 1)[0]
    config = {
        "baseURL": base,
        "systemExportEndpoint": "$export",
        "patientExportEndpoint": "Patient/$export",
        "groupExportEndpoint": f"Group/{group}/$export",
        "fastestResource": "Patient",
        "authentication": {
            "type": "backend-services", "optional": False,
            "tokenEndpoint": f"{origin}/auth/token", "clientId": client_id,
            "privateKey": private, "scope": "system/*.rs", "tokenSignAlgorithm": "ES384",
            "tokenExpiresIn": "5m",
        },
        "requests": {"strictSSL": False, "timeout": 30000},
    }
    (work / "config.js").write_text("module.exports = " + json.dumps(config, indent=2) + ";\n")


if __name__ == "__main__":
    if sys.argv[1] == "keys":
        keys(Path(sys.argv[2]))
    else:
        data(Path(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5])
