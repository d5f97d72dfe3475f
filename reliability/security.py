"""Security regression: the token attacks and the consent existence-oracle matrix.

Both live in the normal suite (tests/test_auth_tokens.py: none alg, HS256 with the public key,
expired, future nbf, wrong aud/iss, tampered payload, unknown kid, revoked, for the built-in and
an external issuer; tests/test_existence_oracles.py: hidden and nonexistent alike on every
path). This scenario runs them, on both databases, and reports their figures, rather than keep a
second copy."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ET
from collections import Counter
from pathlib import Path

from .common import ROOT, Config, Result

FILES = {"token attacks": "tests/test_auth_tokens.py",
         "revocation and refresh reuse": "tests/test_auth_flows.py",
         "existence oracles": "tests/test_existence_oracles.py"}


def run(cfg: Config) -> list[Result]:
    result = Result("security regression (token attacks, existence oracles)")
    env = {**os.environ, "PGO_WORK_TEST_DATABASES": os.environ.get(
        "PGO_WORK_TEST_DATABASES", "sqlite,postgres")}
    result.add("databases", env["PGO_WORK_TEST_DATABASES"])
    for label, path in FILES.items():
        with tempfile.TemporaryDirectory() as tmp:
            report = Path(tmp) / "junit.xml"
            proc = subprocess.run(
                [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", path,
                 f"--junitxml={report}"], cwd=ROOT, env=env, capture_output=True, text=True,
                timeout=1800)
            counts = _counts(report) if report.exists() else Counter()
        cases = [f"{n} {k}" for k, n in sorted(counts.items())]
        result.add(f"{label} ({path})", ", ".join(cases) or "no report")
        attacks = _attack_ids(path) if label == "token attacks" else None
        if attacks:
            result.add("token attacks covered", ", ".join(attacks))
        result.check(proc.returncode == 0,
                     f"{path} failed:\n" + "\n".join(proc.stdout.splitlines()[-15:]))
    return [result]


def _counts(report: Path) -> Counter[str]:
    counts: Counter[str] = Counter()
    for case in ET.parse(report).getroot().iter("testcase"):
        kinds = [child.tag for child in case if child.tag in ("failure", "error", "skipped")]
        counts[kinds[0] if kinds else "passed"] += 1
    return counts


def _attack_ids(path: str) -> list[str]:
    """The attack names parametrised in the token tests (collected, not re-listed here)."""
    proc = subprocess.run([sys.executable, "-m", "pytest", "--collect-only", "-o", "addopts=", "-q",
                           "-p", "no:cacheprovider", path], cwd=ROOT, capture_output=True,
                          text=True, timeout=300, env={**os.environ,
                                                       "PGO_WORK_TEST_DATABASES": "sqlite"})
    names = []
    for line in proc.stdout.splitlines():
        if "attacks_are_401[" in line:
            case = line.split("[", 1)[1].rstrip("]").split("-", 1)[-1]
            if case not in names:
                names.append(case)
    return names
