"""HTTP benchmark: `pgo-work serve --workers 2` driven by `wrk` from a second process.

    apt-get install -y wrk
    python -m benchmarks.bench_http --db sqlite|postgres|both --duration 10

For each database kind: a fresh database, the server on a free 127.0.0.1 port, a few thousand
resources seeded through HTTP transaction Bundles, then `wrk` for reads (GET by id over the
seeded Observations) and creates (POST Observation), each for `--duration` seconds. Then the
reads once more with consent enforcement on: every patient's Consent shares the record with one
occupational physician, whose token (`dev-token --fhir-user Practitioner/...`) reads the same
ids; system and professional runs alternate (`--rounds` of each) and the overhead of the
professional's token is printed. The server is stopped and the database dropped afterwards.
Only loopback targets; bounded duration.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from service.store.migrate import upgrade

from .common import PG_ADMIN_DEFAULT, make_database, observation, transaction_bundles

FHIR_JSON = "application/fhir+json"
PROJECT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _env(url: str, port: int) -> dict[str, str]:
    return {**os.environ, "PGO_WORK_DATABASE_URL": url,
            "PGO_WORK_BASE_URL": f"http://127.0.0.1:{port}/fhir"}


def _exe() -> str:
    return str(Path(sys.executable).parent / "pgo-work")


PRACTITIONER = "bench-physician"


def dev_token(url: str, port: int, *extra: str) -> str:
    """A token from the built-in issuer, as an operator gets one (`dev-token`): system-scoped
    for the operator by default, or as `extra` says."""
    cmd = [_exe(), "dev-token", "--minutes", "120",
           *(extra or ("--scope", "system/*.cruds", "--role", "service"))]
    out = subprocess.run(cmd, env=_env(url, port), capture_output=True, text=True, check=True,
                         cwd=PROJECT, timeout=120)
    return out.stdout.strip().splitlines()[-1]


def start_server(url: str, port: int, workers: int, log: Path) -> subprocess.Popen[bytes]:
    """The console script as an operator runs it, in its own process group so it stops whole."""
    cmd = [_exe(), "serve", "--host", "127.0.0.1", "--port", str(port), "--workers",
           str(workers), "--no-migrate", "--no-access-log", "--log-level", "warning"]
    out = log.open("wb")
    return subprocess.Popen(cmd, env=_env(url, port), stdout=out, stderr=subprocess.STDOUT, cwd=PROJECT,
                            start_new_session=True)


def wait_ready(base: str, proc: subprocess.Popen[bytes], timeout: float = 90) -> None:
    """Until /metadata answers (it needs no token)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        try:
            if httpx.get(f"{base}/metadata", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise RuntimeError("server did not become ready")


def stop_server(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM to the server's own process group (uvicorn and its workers), then SIGKILL."""
    if proc.poll() is not None:
        return
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)


def seed(base: str, token: str, patients: int, obs: int,
         rng: random.Random) -> tuple[list[str], list[str]]:
    """Load through HTTP transaction Bundles; returns Patient ids and Observation ids."""
    known: dict[int, str] = {}
    pids: list[str] = []
    oids: list[str] = []
    headers = {"Content-Type": FHIR_JSON, "Accept": FHIR_JSON, "Prefer": "return=minimal",
               "Authorization": f"Bearer {token}"}
    with httpx.Client(timeout=300) as client:
        for bundle, chunk in transaction_bundles(rng, patients, obs, 100, known):
            resp = client.post(base, content=json.dumps(bundle), headers=headers)
            resp.raise_for_status()
            for entry, source in zip(resp.json()["entry"], chunk, strict=True):
                rid = entry["response"]["location"].split("/")[1]
                if source.is_patient:
                    known[source.patient_index] = f"Patient/{rid}"
                    pids.append(rid)
                else:
                    oids.append(rid)
    return pids, oids


def share_with_physician(base: str, token: str, patients: list[str]) -> None:
    """One Practitioner, and for every patient a Consent sharing the record with them."""
    headers = {"Content-Type": FHIR_JSON, "Accept": FHIR_JSON, "Prefer": "return=minimal",
               "Authorization": f"Bearer {token}"}
    entries: list[dict[str, Any]] = [{"resource": {
        "resourceType": "Practitioner", "id": PRACTITIONER, "name": [{"family": "Bench"}]},
        "request": {"method": "PUT", "url": f"Practitioner/{PRACTITIONER}"}}]
    for pid in patients:
        entries.append({"resource": {
            "resourceType": "Consent", "status": "active",
            "scope": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/consentscope",
                                  "code": "patient-privacy"}]},
            "category": [{"coding": [{"system": "http://loinc.org", "code": "59284-0"}]}],
            "patient": {"reference": f"Patient/{pid}"},
            "provision": {"type": "deny", "provision": [{"type": "permit", "actor": [{
                "role": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ParticipationType",
                                     "code": "PRCP"}]},
                "reference": {"reference": f"Practitioner/{PRACTITIONER}"}}]}]}},
            "request": {"method": "POST", "url": "Consent"}})
    with httpx.Client(timeout=300) as client:
        resp = client.post(base, content=json.dumps({"resourceType": "Bundle", "type": "transaction",
                                                     "entry": entries}), headers=headers)
        resp.raise_for_status()


READ_LUA = """
local ids = {%s}
local headers = {["Accept"] = "%s", ["Authorization"] = "Bearer %s"}
request = function()
  return wrk.format("GET", "/fhir/Observation/" .. ids[math.random(#ids)], headers)
end
"""
TYPED_READ_LUA = """
local ids = {%s}
local headers = {["Accept"] = "%s", ["Authorization"] = "Bearer %s"}
request = function()
  return wrk.format("GET", "/fhir/%s/" .. ids[math.random(#ids)], headers)
end
"""
CREATE_LUA = """
local bodies = {%s}
local headers = {["Content-Type"] = "%s", ["Accept"] = "%s", ["Authorization"] = "Bearer %s"}
request = function()
  return wrk.format("POST", "/fhir/Observation", headers, bodies[math.random(#bodies)])
end
"""


def _lua_str(text: str) -> str:
    return "[==[" + text + "]==]"


def run_wrk(base_host: str, script: Path, args: argparse.Namespace) -> dict[str, Any]:
    cmd = ["wrk", "-t", str(args.threads), "-c", str(args.connections), "-d",
           f"{args.duration}s", "--timeout", "10s", "--latency", "-s", str(script), base_host]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=args.duration + 60,
                         check=True).stdout
    return parse_wrk(out)


def _ms(value: str, unit: str) -> float:
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}[unit]


def parse_wrk(out: str) -> dict[str, Any]:
    result: dict[str, Any] = {"raw": out}
    rate = re.search(r"Requests/sec:\s+([\d.]+)", out)
    result["rps"] = float(rate.group(1)) if rate else float("nan")
    for pct in ("50", "90", "99"):
        m = re.search(rf"^\s+{pct}%\s+([\d.]+)(us|ms|s|m)\s*$", out, re.M)
        result[f"p{pct}"] = _ms(m.group(1), m.group(2)) if m else float("nan")
    total = re.search(r"(\d+) requests in", out)
    result["requests"] = int(total.group(1)) if total else 0
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    result["non_2xx"] = int(bad.group(1)) if bad else 0
    errors = re.search(r"Socket errors: (.*)", out)
    result["socket_errors"] = errors.group(1) if errors else ""
    return result


def _mean_runs(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The mean of several wrk runs' figures (rates and latencies alike)."""
    keys = ("rps", "p50", "p90", "p99")
    out: dict[str, Any] = {k: sum(r[k] for r in runs) / len(runs) for k in keys}
    out["requests"] = sum(r["requests"] for r in runs)
    out["non_2xx"] = sum(r["non_2xx"] for r in runs)
    return out


def bench_one(kind: str, args: argparse.Namespace) -> dict[str, Any]:
    workdir = Path(tempfile.mkdtemp(prefix="pgo-http-"))
    db = make_database(kind, workdir, args.pg_admin)
    port = free_port()
    host = f"http://127.0.0.1:{port}"
    base = f"{host}/fhir"
    print(f"[{kind}] {db.name}: serving on {base} with {args.workers} workers", file=sys.stderr)
    proc = None
    try:
        upgrade(db.url)
        token = dev_token(db.url, port)
        proc = start_server(db.url, port, args.workers, workdir / "server.log")
        wait_ready(base, proc)
        rng = random.Random(args.seed)
        t0 = time.perf_counter()
        pids, oids = seed(base, token, args.patients, args.obs, rng)
        seeded = len(pids) + len(oids)
        seed_rate = seeded / (time.perf_counter() - t0)
        print(f"[{kind}] seeded {seeded} resources over HTTP ({seed_rate:.0f}/s)", file=sys.stderr)
        read_lua = workdir / "read.lua"
        read_lua.write_text(READ_LUA % (",".join(f'"{i}"' for i in oids), FHIR_JSON, token))
        bodies = [json.dumps(observation(rng, f"Patient/{rng.choice(pids)}")) for _ in range(200)]
        create_lua = workdir / "create.lua"
        create_lua.write_text(CREATE_LUA % (",".join(_lua_str(b) for b in bodies), FHIR_JSON,
                                            FHIR_JSON, token))
        reads = run_wrk(host, read_lua, args)
        creates = run_wrk(host, create_lua, args)
        share_with_physician(base, token, pids)
        physician = dev_token(db.url, port, "--scope", "user/*.rs", "--fhir-user",
                              f"Practitioner/{PRACTITIONER}", "--role", "occupational-physician")
        prof_lua = workdir / "read-professional.lua"
        prof_lua.write_text(READ_LUA % (",".join(f'"{i}"' for i in oids), FHIR_JSON, physician))
        system_runs, prof_runs = [], []
        for _ in range(args.rounds):
            system_runs.append(run_wrk(host, read_lua, args))
            prof_runs.append(run_wrk(host, prof_lua, args))
        return {"db": kind, "seeded": seeded, "seed_rate": seed_rate, "reads": reads,
                "creates": creates, "reads_system": _mean_runs(system_runs),
                "reads_professional": _mean_runs(prof_runs)}
    finally:
        if proc is not None:
            stop_server(proc)
        db.drop()
        shutil.rmtree(workdir, ignore_errors=True)


def start_baseline(raw_dsn: str, port: int, workers: int, log: Path) -> subprocess.Popen[bytes]:
    """`benchmarks/baseline_app.py` under uvicorn (uvloop, httptools), as `pgo-work serve` runs."""
    cmd = [str(Path(sys.executable).parent / "uvicorn"), "benchmarks.baseline_app:app",
           "--host", "127.0.0.1", "--port", str(port), "--workers", str(workers),
           "--loop", "uvloop", "--http", "httptools", "--no-access-log", "--log-level", "warning"]
    out = log.open("wb")
    return subprocess.Popen(cmd, env={**os.environ, "BASELINE_DSN": raw_dsn}, stdout=out,
                            stderr=subprocess.STDOUT, cwd=PROJECT, start_new_session=True)


def wait_baseline(host: str, proc: subprocess.Popen[bytes], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"baseline exited with {proc.returncode}")
        try:
            httpx.get(f"{host}/fhir/Patient/none", timeout=2)
            return
        except httpx.HTTPError:
            time.sleep(0.3)
    raise RuntimeError("baseline did not become ready")


READ_CASES = (("baseline", "Patient"), ("baseline", "Observation"),
              ("physician", "Patient"), ("physician", "Observation"),
              ("operator", "Patient"), ("operator", "Observation"))


def bench_reads(args: argparse.Namespace) -> dict[str, Any]:
    """The read targets of issue 10, side by side in one run on one PostgreSQL database:
    the baseline app and `pgo-work serve` (both `--workers`), GET Patient/{id} and
    GET Observation/{id} with an occupational physician's token under the patients' Consents
    and with the operator's token; the cases rotate `--rounds` times so drift falls on all."""
    workdir = Path(tempfile.mkdtemp(prefix="pgo-reads-"))
    db = make_database("postgres", workdir, args.pg_admin)
    port, bport = free_port(), free_port()
    host, bhost = f"http://127.0.0.1:{port}", f"http://127.0.0.1:{bport}"
    base = f"{host}/fhir"
    proc = baseline = None
    try:
        upgrade(db.url)
        token = dev_token(db.url, port)
        proc = start_server(db.url, port, args.workers, workdir / "server.log")
        wait_ready(base, proc)
        pids, oids = seed(base, token, args.patients, args.obs, random.Random(args.seed))
        share_with_physician(base, token, pids)
        physician = dev_token(db.url, port, "--scope", "user/*.rs", "--fhir-user",
                              f"Practitioner/{PRACTITIONER}", "--role", "occupational-physician")
        subprocess.run(["psql", db.raw_dsn, "-qc", "VACUUM ANALYZE"], check=False,
                       capture_output=True, timeout=300)
        baseline = start_baseline(db.raw_dsn, bport, args.workers, workdir / "baseline.log")
        wait_baseline(bhost, baseline)
        tokens = {"baseline": token, "physician": physician, "operator": token}
        ids = {"Patient": pids, "Observation": oids}
        scripts: dict[tuple[str, str], Path] = {}
        for who, rtype in READ_CASES:
            script = workdir / f"{who}-{rtype}.lua"
            script.write_text(TYPED_READ_LUA % (",".join(f'"{i}"' for i in ids[rtype]),
                                                FHIR_JSON, tokens[who], rtype))
            scripts[(who, rtype)] = script
        # Warm both servers (connection pools, caches) before anything counts.
        warm = argparse.Namespace(**{**vars(args), "duration": 2})
        for case in READ_CASES:
            run_wrk(bhost if case[0] == "baseline" else host, scripts[case], warm)
        runs: dict[tuple[str, str], list[dict[str, Any]]] = {c: [] for c in READ_CASES}
        for _ in range(args.rounds):
            for case in READ_CASES:
                result = run_wrk(bhost if case[0] == "baseline" else host, scripts[case], args)
                runs[case].append(result)
        return {f"{who}:{rtype}": _mean_runs(r) for (who, rtype), r in runs.items()}
    finally:
        for p in (proc, baseline):
            if p is not None:
                stop_server(p)
        db.drop()
        shutil.rmtree(workdir, ignore_errors=True)


def report_reads(results: dict[str, Any], args: argparse.Namespace) -> None:
    print(f"\nReads, PostgreSQL, {args.workers} workers each, wrk -t{args.threads} "
          f"-c{args.connections} -d{args.duration}s, {args.rounds} rotating rounds")
    print(f"{'server':<11}{'type':<13}{'reads/s':>9}{'p50 ms':>9}{'p90 ms':>9}{'p99 ms':>9}"
          f"{'x base':>8}{'non-2xx':>9}")
    for who, rtype in READ_CASES:
        w, b = results[f"{who}:{rtype}"], results[f"baseline:{rtype}"]
        print(f"{who:<11}{rtype:<13}{w['rps']:>9.0f}{w['p50']:>9.2f}{w['p90']:>9.2f}"
              f"{w['p99']:>9.2f}{w['rps'] / b['rps']:>8.2f}{w['non_2xx']:>9}")
    for rtype in ("Patient", "Observation"):
        op, ph = results[f"operator:{rtype}"], results[f"physician:{rtype}"]
        print(f"consent overhead on {rtype} reads: {op['rps'] / ph['rps'] - 1:.0%} in "
              f"throughput, {ph['p50'] / op['p50'] - 1:.0%} in p50 latency")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.bench_http", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--db", choices=("sqlite", "postgres", "both"), default="both")
    p.add_argument("--patients", type=int, default=30)
    p.add_argument("--obs", type=int, default=99, help="Observations per patient (seed)")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--duration", type=int, default=10, help="seconds per wrk run")
    p.add_argument("--threads", type=int, default=2, help="wrk threads")
    p.add_argument("--connections", type=int, default=16, help="wrk connections")
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--rounds", type=int, default=2,
                   help="alternating wrk runs of system and professional reads")
    p.add_argument("--pg-admin", default=PG_ADMIN_DEFAULT)
    p.add_argument("--json", help="also write the figures to this file")
    p.add_argument("--suite", choices=("reads", "all"), default="all",
                   help="reads: the read targets against the baseline app (PostgreSQL only)")
    args = p.parse_args(argv)
    if shutil.which("wrk") is None:
        print("wrk is not installed: apt-get install -y wrk", file=sys.stderr)
        return 2
    if args.suite == "reads":
        figures = bench_reads(args)
        report_reads(figures, args)
        if args.json:
            Path(args.json).write_text(json.dumps(figures, indent=2))
        return 0
    kinds = ["sqlite", "postgres"] if args.db == "both" else [args.db]
    results = [bench_one(kind, args) for kind in kinds]
    print(f"\nHTTP, {args.workers} workers, wrk -t{args.threads} -c{args.connections} "
          f"-d{args.duration}s")
    print(f"{'db':<10}{'test':<19}{'req/s':>9}{'p50 ms':>9}{'p90 ms':>9}{'p99 ms':>9}"
          f"{'requests':>10}{'non-2xx':>9}")
    for r in results:
        for test in ("reads", "creates", "reads_system", "reads_professional"):
            w = r[test]
            print(f"{r['db']:<10}{test:<19}{w['rps']:>9.0f}{w['p50']:>9.1f}{w['p90']:>9.1f}"
                  f"{w['p99']:>9.1f}{w['requests']:>10}{w['non_2xx']:>9}")
        print(f"{r['db']:<10}seeded {r['seeded']} resources via transaction Bundles at "
              f"{r['seed_rate']:.0f}/s")
        system, prof = r["reads_system"], r["reads_professional"]
        print(f"{r['db']:<10}consent overhead on reads: {system['rps'] / prof['rps'] - 1:.0%} in "
              f"throughput, {prof['p50'] / system['p50'] - 1:.0%} in p50 latency "
              f"({args.rounds} alternating runs each)")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
