"""Hostile input: schemathesis against openapi/openapi.json with its conformance checks, and
hand-written attacks on the parsers and the search compiler.

Targets: no 5xx; every refusal a 4xx OperationOutcome in FHIR JSON (which is what the OpenAPI
document says each operation answers); the server still up; nothing half-written (a refused
write leaves the resource count unchanged)."""

from __future__ import annotations

import json
import re
import subprocess
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from .common import ROOT, Config, Result, Server, count_rows, database, headers, is_outcome, token

CHECKS = ("not_a_server_error,status_code_conformance,content_type_conformance,"
          "response_headers_conformance,response_schema_conformance,negative_data_rejection,"
          "ignored_auth")
METACHARS = ["' OR '1'='1", "'; DROP TABLE resource; --", "\" OR 1=1 --", "%", "_", "\\",
             "%' AND 1=(SELECT 1) --", "$this.where(true)", "descendants()", "') or true or ('",
             "{{x}}", "\u0000", "*", "[]", "||", ",,", "$", "1e999", "-0", "9" * 400]
SEARCH_PARAMS = {  # one per search-parameter type
    "string": ("Patient", "name"), "token": ("Observation", "code"),
    "date": ("Observation", "date"), "reference": ("Observation", "subject"),
    "quantity": ("Observation", "value-quantity"), "number": ("RiskAssessment", "probability"),
    "uri": ("ValueSet", "url"), "composite": ("Observation", "code-value-quantity"),
    "special/_id": ("Patient", "_id"), "chain": ("Observation", "subject:Patient.name"),
}


@dataclass
class Case:
    name: str
    method: str
    path: str
    body: bytes | None = None
    params: Any = None
    content_type: str = "application/fhir+json"
    may_succeed: bool = False


def _xml_cases() -> list[Case]:
    """FHIR XML bodies a parser can be hurt by: entities (expansion bombs, external files and
    URLs), nesting beyond any FHIR resource, and a body beyond the size limit."""
    xml = "application/fhir+xml"
    root = b'<Patient xmlns="http://hl7.org/fhir">'
    laughs = b'<?xml version="1.0"?><!DOCTYPE l [<!ENTITY a "aaaaaaaaaa">' + b"".join(
        f'<!ENTITY {c} "{("&" + p + ";") * 10}">'.encode()
        for p, c in zip("abcdefgh", "bcdefghi", strict=True)) + b"]>" + root + \
        b'<id value="&i;"/></Patient>'
    external = (b'<?xml version="1.0"?><!DOCTYPE p [<!ENTITY x SYSTEM "file:///etc/passwd">]>'
                + root + b'<id value="&x;"/></Patient>')
    remote = (b'<?xml version="1.0"?><!DOCTYPE p SYSTEM "http://127.0.0.1:9/evil.dtd">' + root
              + b"</Patient>")
    deep = root + b'<extension url="u">' * 10000 + b"</extension>" * 10000 + b"</Patient>"
    big = root + b'<name><family value="' + b"x" * (50 * 1024 * 1024) + b'"/></name></Patient>'
    return [Case("XML entity expansion (billion laughs)", "POST", "Patient", laughs,
                 content_type=xml),
            Case("XML external entity (file)", "POST", "Patient", external, content_type=xml),
            Case("XML external DTD (network)", "POST", "Patient", remote, content_type=xml),
            Case("XML nested 10,000 deep", "POST", "Patient", deep, content_type=xml),
            Case("XML 50 MB body", "POST", "Patient", big, content_type=xml),
            Case("XML not well-formed", "POST", "Patient", root + b"<active value='true'>",
                 content_type=xml)]


def _cases() -> list[Case]:
    deep = b'{"resourceType":"Patient","extension":' + b"[" * 10000 + b"]" * 10000 + b"}"
    big = b'{"resourceType":"Patient","name":[{"family":"' + b"x" * (50 * 1024 * 1024) + b'"}]}'
    entries = [{"resource": {"resourceType": "Patient"}, "request": {"method": "POST",
                                                                       "url": "Patient"}}] * 10000
    cases = [
        Case("JSON nested 10,000 deep", "POST", "Patient", deep),
        Case("50 MB body", "POST", "Patient", big),
        Case("invalid UTF-8", "POST", "Patient",
             b'{"resourceType":"Patient","name":[{"family":"\xff\xfe\xc3("}]}'),
        Case("integer beyond 64 bits", "POST", "Observation",
             b'{"resourceType":"Observation","status":"final","code":{"text":"x"},'
             b'"valueInteger":123456789012345678901234567890}'),
        Case("decimal 1e400", "POST", "Observation",
             b'{"resourceType":"Observation","status":"final","code":{"text":"x"},'
             b'"valueQuantity":{"value":1e400}}'),
        Case("decimal with 400 digits", "POST", "Observation",
             b'{"resourceType":"Observation","status":"final","code":{"text":"x"},'
             b'"valueQuantity":{"value":0.' + b"1" * 400 + b"}}", may_succeed=True),
        Case("Bundle of 10,000 entries", "POST", "",
             json.dumps({"resourceType": "Bundle", "type": "transaction",
                         "entry": entries}).encode()),
        Case("500 search parameters", "GET", "Patient",
             params=[("given", f"n{i}") for i in range(500)], may_succeed=True),
        Case("_count=1000000", "GET", "Patient", params=[("_count", "1000000")],
             may_succeed=True),
        Case("unknown _sort", "GET", "Patient", params=[("_sort", "shoe-size")]),
        Case("duplicate JSON keys", "POST", "Patient",
             b'{"resourceType":"Patient","gender":"male","gender":"female"}'),
        Case("unicode-heavy strings", "POST", "Patient", json.dumps({
            "resourceType": "Patient", "name": [{"family": "Z\u0351\u0363a\u036cl\u0357go "
                                                "\u202eevil\u202c \U0001d518\U0001f600 \u4e2d\u6587 "
                                                "\u0627\u0644\u0639\u0631\u0628\u064a\u0629 \ufeff"
                                                "\U0010ffff"}]}).encode(), may_succeed=True),
        Case("not JSON at all", "POST", "Patient", b"<Patient xmlns='http://hl7.org/fhir'/>"),
        Case("JSON that is not an object", "POST", "Patient", b"[1, 2, 3]"),
        *_xml_cases(),
    ]
    for kind, (rtype, param) in SEARCH_PARAMS.items():
        for char in METACHARS:
            cases.append(Case(f"metacharacters in {kind} search", "GET", rtype,
                              params=[(param, char)], may_succeed=True))
            # `:missing` takes only true/false: a known parameter refuses anything else (400).
            # The package defines no composite SearchParameter, so that one is an unknown
            # parameter, which a search ignores by default (R4 3.1.1.3.3; listed in the Bundle's
            # outcome entry, 400 only under `Prefer: handling=strict`).
            cases.append(Case(f"metacharacters in {kind} search (:missing)", "GET", rtype,
                              params=[(f"{param}:missing", char)],
                              may_succeed=kind == "composite"))
    return cases


def _hand_written(base: str, tok: str, url: str, result: Result) -> None:
    statuses: Counter[str] = Counter()
    problems: list[str] = []
    writes_before = count_rows(url, "Patient") + count_rows(url, "Observation")
    accepted_writes = 0
    with httpx.Client(base_url=base + "/", timeout=120) as client:
        for case in _cases():
            h = headers(tok) if case.body is None else {**headers(tok),
                                                        "Content-Type": case.content_type}
            try:
                resp = client.request(case.method, case.path or base, content=case.body,
                                      params=case.params, headers=h)
            except httpx.HTTPError as exc:
                problems.append(f"{case.name}: {type(exc).__name__}")
                statuses["no answer"] += 1
                continue
            statuses[f"{resp.status_code}"] += 1
            if resp.status_code >= 500:
                problems.append(f"{case.name}: {resp.status_code} {resp.text[:200]}")
            elif resp.status_code >= 400:
                if not is_outcome(resp) or "fhir+json" not in resp.headers.get("content-type", ""):
                    problems.append(f"{case.name}: {resp.status_code} without an OperationOutcome")
            elif not case.may_succeed:
                problems.append(f"{case.name}: accepted ({resp.status_code})")
            if case.method == "POST" and resp.status_code == 201:
                accepted_writes += 1
            if not _up(base):
                problems.append(f"server down after {case.name}")
                break
    writes_after = count_rows(url, "Patient") + count_rows(url, "Observation")
    result.add("hand-written cases", sum(statuses.values()))
    result.add("hand-written answers", dict(sorted(statuses.items())))
    result.add("resources written by refused requests",
               writes_after - writes_before - accepted_writes)
    result.check(writes_after - writes_before == accepted_writes, "a refused write left data")
    for p in problems:
        result.failures.append(p)


def _up(base: str) -> bool:
    """The server answers on a fresh connection (the case's own may have been closed)."""
    try:
        return httpx.get(f"{base}/metadata", timeout=30).status_code == 200
    except httpx.HTTPError:
        return False


def _schemathesis(server: Server, tok: str, cases: int, result: Result) -> None:
    # Measured: the examples and coverage phases give about 3,300 cases whatever the budget,
    # and each unit of the per-operation budget 25 to 35 more; the count check below says
    # whether the target was met.
    per_operation = max(20, 20 + (cases - 3300) // 25 + 1)
    with tempfile.TemporaryDirectory() as tmp:
        began = time.monotonic()
        proc = subprocess.run(
            [str(Path(_bin("schemathesis"))), "run", str(ROOT / "openapi" / "openapi.json"),
             "--url", f"http://127.0.0.1:{server.port}", "-H", f"Authorization: Bearer {tok}",
             "-n", str(per_operation), "--checks", CHECKS, "--seed", "14", "--no-color",
             "--workers", "2", "--phases", "examples,coverage,fuzzing",
             "--request-timeout", "30", "--suppress-health-check", "all",
             "--generation-allow-x00", "true"],
            capture_output=True, text=True, cwd=tmp, timeout=3600)
        took = time.monotonic() - began
    out = proc.stdout + proc.stderr
    generated = re.search(r"(\d+) generated(?:, (\d+) found (\d+) unique failures)?", out)
    failures = re.findall(r"^\s+❌ (ST\d+ [^:]+): (\d+)", out, re.M)
    result.add("schemathesis checks", CHECKS.replace(",", ", "))
    result.add("schemathesis cases generated", generated.group(1) if generated else "?")
    result.add("schemathesis seconds", f"{took:.0f}")
    result.add("schemathesis failures", ", ".join(f"{n} {k}" for k, n in failures) or "0")
    result.check(generated is not None, "schemathesis did not finish:\n" + out[-2000:])
    result.check(not failures, "schemathesis failures:\n" + _failure_block(out))
    result.check(generated is None or int(generated.group(1)) >= cases,
                 f"only {generated.group(1) if generated else 0} cases (wanted {cases})")


def _failure_block(out: str) -> str:
    start = out.find("FAILURES")
    return out[start:start + 4000] if start >= 0 else out[-2000:]


def _bin(name: str) -> str:
    import sys

    return str(Path(sys.executable).parent / name)


def run(cfg: Config) -> list[Result]:
    results = []
    for kind in ("sqlite", "postgres"):
        result = Result(f"hostile input ({kind})")
        with database(kind) as url, Server(url) as server:
            tok = token(url, server.base)
            _hand_written(server.base, tok, url, result)
            if kind == "sqlite" or not cfg.quick:
                _schemathesis(server, tok, cfg.fuzz_cases, result)
            result.add("server up afterwards", _up(server.base))
            result.check(_up(server.base), "server down")
        results.append(result)
    return results
