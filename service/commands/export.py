"""`pgo-work export`: a Bulk Data export on the command line, as the operator.

It is the same export as `$export`: a job row (`service.operations.bulk.kickoff.start_job`)
run chunk by chunk (`chunks.run_chunk`) under an access policy built for the operator's
claims (role `service`, `system/*.rs`) by the same `build_policy` every request gets, so the
same predicate path and the same audit (one AuditEvent per patient read, naming the export).
The files are then written out (a file per type into a directory, or one stream on stdout) and
removed from the database. Progress goes to stderr.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import IO, Any

from ..access.dependencies import build_policy
from ..access.principal import principal_from_claims
from ..conformance.structure import r4_resource_types
from ..fhir import dates
from ..fhir.outcome import FhirError
from ..operations.bulk import chunks, kickoff
from ..operations.bulk import params as P
from ..runtime import Runtime
from ..store import export_jobs
from ..store.repository import ResourceStore

OPERATOR_CLIENT = "pgo-work-cli"


def operator_claims(rt: Runtime) -> dict[str, Any]:
    return {"iss": rt.settings.resolved_issuer(), "sub": "operator", "client_id": OPERATOR_CLIENT,
            "scope": "system/*.rs", "role": "service"}


async def _expected(rt: Runtime, store: ResourceStore, types: list[str],
                    params: P.ExportParams) -> int:
    """How many resources the export will hold (the same search, counted)."""
    total = 0
    for rtype in types:
        pairs = [("_lastUpdated", f"gt{params.since}")] if params.since else []
        req = rt.parser.parse(rtype, pairs)
        req.summary, req.total = "count", "accurate"
        total += (await store.search(req)).total or 0
    return total


async def run_export(rt: Runtime, types: list[str], since: str | None, out: Path | None,
                     stdout: IO[str], stderr: IO[str]) -> dict[str, Any]:
    """Export, write the files, and return the summary (counts per type, patients covered)."""
    claims = operator_claims(rt)
    access = await build_policy(principal_from_claims(claims, rt.base_url), rt)
    access.start("operation", "pgo-work export")
    values = {"_type": [",".join(types)] if types else [], "_since": [since] if since else []}
    params = P.parse("system", lambda name: values.get(name, []), {}, rt.parser,
                     r4_resource_types(), [])
    async with rt.store(access, write=True) as store:
        job = await kickoff.start_job(rt, store, claims, params, "pgo-work export")
        expected = await _expected(rt, store, job.params["resolved_types"], params)
    from tqdm import tqdm  # the same progress bar as `pgo-work import`

    progress = tqdm(total=expected, unit="resources", desc="export", file=stderr,
                    mininterval=0.5)
    started = time.monotonic()
    while True:
        await chunks.run_chunk(rt, job.id, claims, f"pgo-work export {job.id}")
        async with rt.engine.connect() as conn:
            current = await export_jobs.load_job(conn, job.id)
        assert current is not None
        types_ = current.params["resolved_types"]
        step = (current.cursor or {}).get("t", len(types_))
        progress.n = current.exported
        progress.set_postfix_str(types_[step] if step < len(types_) else "done")
        if current.status not in export_jobs.ACTIVE:
            break
    progress.close()
    if current.status != "completed":
        raise FhirError(500, "exception", f"the export failed: {current.error}")
    counts: dict[str, int] = {}
    async with rt.engine.connect() as conn:
        for info in await export_jobs.files_of(conn, job.id):
            found = await export_jobs.read_file(conn, job.id, info.seq)
            assert found is not None
            rtype, content, _ = found
            counts[rtype] = counts.get(rtype, 0) + info.count
            if out is None:
                stdout.write(content)
            else:
                with (out / f"{rtype}.ndjson").open("a", encoding="utf-8") as f:
                    f.write(content)
    async with rt.engine.connect() as conn, conn.begin():
        await export_jobs.end_job(conn, job.id, "expired", dates.utcnow())  # written out: gone
    return {"job": job.id, "counts": counts, "resources": sum(counts.values()),
            "patients": len(current.patients), "seconds": round(time.monotonic() - started, 1)}


def cmd_export(args: argparse.Namespace) -> int:
    import asyncio

    from ..config import get_settings
    from ..runtime import build_runtime

    out: Path | None = None
    if args.output != "-":
        out = Path(args.output)
        out.mkdir(parents=True, exist_ok=True)
        stale = sorted(p.name for p in out.glob("*.ndjson"))
        if stale:
            print(f"pgo-work export: {out} already holds {', '.join(stale[:5])}; choose an empty "
                  "directory", file=sys.stderr)
            return 2
    types = [t for v in args.type or [] for t in v.split(",") if t]

    async def run() -> dict[str, Any]:
        rt = build_runtime(get_settings())
        try:
            return await run_export(rt, types, args.since, out, sys.stdout, sys.stderr)
        finally:
            await rt.close()

    try:
        summary = asyncio.run(run())
    except FhirError as exc:
        print(f"pgo-work export: {exc.issues[0].diagnostics}", file=sys.stderr)
        return 2
    per_type = ", ".join(f"{t} {n}" for t, n in sorted(summary["counts"].items())) or "nothing"
    where = f" into {out}" if out is not None else ""
    print(f"pgo-work export: {summary['resources']} resources of {summary['patients']} patients"
          f"{where} in {summary['seconds']} s ({per_type}); audited as export {summary['job']}",
          file=sys.stderr)
    return 0


def add_parser(sub: Any) -> None:
    exp = sub.add_parser("export", help="export resources as NDJSON (Bulk Data), as the operator")
    exp.add_argument("output", nargs="?", default="-",
                     help="a directory for one <Type>.ndjson per type, or - for one stream on "
                          "stdout (default)")
    exp.add_argument("--type", action="append",
                     help="resource types to export (repeat or comma-separate; default: every "
                          "type stored except AuditEvent)")
    exp.add_argument("--since", help="only resources changed after this FHIR instant")
    exp.set_defaults(fn=cmd_export)
