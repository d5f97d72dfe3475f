"""`pgo-work import FILE.ndjson|DIR`: load NDJSON resources through the transaction path.

One resource per line (the Bulk Data format). Lines are sent in batches (default 500) as
transaction Bundles of `PUT Type/id` entries through `BundleProcessor`, so validation, security
labels, index rows, compartments and consent facts are exactly those of a transaction posted
over HTTP. Decisions:

- Identity: a line with an id keeps it (update as create, which the operator may do); a line
  without one gets an id derived from its content (a UUID v5 of its canonical JSON), so the
  same line always lands on the same resource.
- A second run changes nothing: a `PUT` whose content equals the stored version (ignoring
  `meta.versionId` and `meta.lastUpdated`) writes no new version (`keep_unchanged`). Only the
  importer asks for that; a PUT over HTTP keeps its versioning as before.
- A bad line (not JSON, no resourceType, an invalid id, refused by validation or by the store)
  is reported with its file, line number and the OperationOutcome's issues, and left out; its
  batch is retried without it, so the good lines of the batch still load. A line that repeats
  a resource already in the current batch starts a new batch (a transaction changes a resource
  at most once).
- Resumable: after each committed batch a checkpoint (file, size, mtime, byte offset, line and
  counts) is written atomically under the checkpoint folder; a run after a kill continues
  after the last committed batch. A batch committed just before the kill but not yet in the
  checkpoint is sent again and, unchanged, writes nothing. A finished file's checkpoint is
  removed, so running again re-reads it (and reports it unchanged).
- Audit: the import runs as the operator (principal role `service`, client `pgo-work-import`)
  with the same access policy and audit trail as an operator's token over HTTP: each batch is
  one audited transaction, its AuditEvents committing with its data.
"""

from __future__ import annotations

import hashlib
import os
import re
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import orjson

from ..fhir.outcome import FhirError, Issue

if TYPE_CHECKING:  # the command line imports this module for its arguments only
    from ..access.principal import Principal
    from ..runtime import Runtime

IMPORT_NAMESPACE = uuid.UUID("6b1f8c1e-3f0e-5d3a-9a58-7c0d1b2e4f10")
"""Namespace of the ids derived from a line's content (a line without an id)."""
ID_RE = re.compile(r"^[A-Za-z0-9\-.]{1,64}$")
"""A FHIR id (R4 2.24.0.1), as the store checks it (`repository.ID_RE`)."""


def operator() -> Principal:
    """Who the import runs as: the operator's own tooling (role `service`, system scopes)."""
    from ..access.principal import Principal
    from ..access.scopes import parse_scopes

    return Principal(subject="pgo-work-import", issuer="urn:pgo-work:cli",
                     scopes=parse_scopes("system/*.cruds"), client_id="pgo-work-import",
                     role="service")
_ENTRY = re.compile(r"Bundle\.entry\[(\d+)\]")
_LOCATION = re.compile(r"^Bundle\.entry\[\d+\](?:\.resource)?\.?")


@dataclass
class Counts:
    lines: int = 0
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    failed: int = 0

    def add(self, other: Counts) -> None:
        for name, value in asdict(other).items():
            setattr(self, name, getattr(self, name) + value)


@dataclass
class LineError:
    file: str
    line: int
    issues: list[dict[str, Any]]

    def lines(self) -> list[str]:
        """One line per issue: `file:line: severity [code] where: diagnostics`."""
        out = []
        for issue in self.issues:
            where = ", ".join(issue.get("expression") or [])
            out.append(f"{self.file}:{self.line}: {issue.get('severity', 'error')} "
                       f"[{issue.get('code', 'invalid')}]{' ' + where if where else ''}: "
                       f"{issue.get('diagnostics', '')}")
        return out


@dataclass
class Line:
    number: int
    resource: dict[str, Any]

    @property
    def ref(self) -> str:
        return f"{self.resource['resourceType']}/{self.resource['id']}"


@dataclass
class Checkpoint:
    """Where an interrupted import of one file continues (`import_file`)."""

    path: Path
    source: str
    size: int
    mtime_ns: int
    offset: int = 0
    line: int = 0
    counts: Counts = field(default_factory=Counts)

    @classmethod
    def for_file(cls, folder: Path, source: Path) -> Checkpoint:
        stat = source.stat()
        name = hashlib.sha256(str(source.resolve()).encode()).hexdigest()[:24]
        fresh = cls(folder / f"{name}.json", str(source.resolve()), stat.st_size, stat.st_mtime_ns)
        if fresh.path.exists():
            try:
                data = orjson.loads(fresh.path.read_bytes())
            except orjson.JSONDecodeError:
                return fresh
            if (data.get("source"), data.get("size"), data.get("mtime_ns")) == (
                    fresh.source, fresh.size, fresh.mtime_ns):
                fresh.offset, fresh.line = int(data["offset"]), int(data["line"])
                fresh.counts = Counts(**data.get("counts", {}))
        return fresh

    def save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_bytes(orjson.dumps({"source": self.source, "size": self.size,
                                      "mtime_ns": self.mtime_ns, "offset": self.offset,
                                      "line": self.line, "counts": asdict(self.counts)}))
        os.replace(tmp, self.path)

    def remove(self) -> None:
        self.path.unlink(missing_ok=True)


def ndjson_files(paths: list[Path]) -> list[Path]:
    """The files to import: each file given, and the `*.ndjson` files of each folder, sorted."""
    out: list[Path] = []
    for path in paths:
        if path.is_dir():
            out.extend(sorted(p for p in path.rglob("*.ndjson") if p.is_file()))
        elif path.is_file():
            out.append(path)
        else:
            raise FileNotFoundError(f"{path}: no such file or folder")
    return out


def parse_line(raw: bytes, file: str, number: int) -> Line | LineError | None:
    """A resource ready for its PUT entry, an error naming the line, or None for a blank line."""
    if not raw.strip():
        return None

    def bad(code: str, text: str, where: str | None = None) -> LineError:
        issue = Issue(code, text, expression=[where] if where else [])
        return LineError(file, number, [issue.to_json()])

    try:
        resource = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        return bad("structure", f"not JSON: {exc}")
    if not isinstance(resource, dict):
        return bad("structure", "a line must hold one FHIR resource (a JSON object)")
    rtype = resource.get("resourceType")
    if not isinstance(rtype, str) or not rtype:
        return bad("required", "the resource has no resourceType", "resourceType")
    rid = resource.get("id")
    if rid is None:
        canonical = orjson.dumps(resource, option=orjson.OPT_SORT_KEYS)
        resource = {**resource, "id": str(uuid.uuid5(IMPORT_NAMESPACE, canonical.decode()))}
    elif not isinstance(rid, str) or not ID_RE.match(rid):
        return bad("value", f"'{rid}' is not a valid FHIR id", f"{rtype}.id")
    return Line(number, resource)


def _entry_of(exc: FhirError) -> int | None:
    """The Bundle entry a transaction's failure names (`bundle._blame`), if it names one."""
    for issue in exc.issues:
        for text in [*issue.expression, issue.diagnostics]:
            found = _ENTRY.search(text)
            if found:
                return int(found.group(1))
    return None


def _as_line_issues(exc: FhirError, rtype: str) -> list[dict[str, Any]]:
    """The failure's issues as they concern the line: paths from the resource, not the Bundle."""
    out = []
    for issue in exc.issues:
        where = []
        for e in issue.expression:
            rest = _LOCATION.sub("", e) if e.startswith("Bundle.") else None
            where.append(e if rest is None else rtype + ("." + rest if rest else ""))
        text = re.sub(r"^Bundle\.entry\[\d+\]:\s*", "", issue.diagnostics)
        out.append(Issue(issue.code, text, severity=issue.severity, expression=where).to_json())
    return out


class Importer:
    """Runs the batches of one import; one instance per `pgo-work import`."""

    def __init__(self, rt: Runtime, batch: int = 500, errors: IO[str] | None = None) -> None:
        from ..rest.bundle import BundleProcessor

        self.rt = rt
        self.processor = BundleProcessor(rt)
        self.principal = operator()
        self.batch = max(1, min(batch, rt.settings.max_bundle_entries))
        self.errors = errors if errors is not None else sys.stderr
        self.failures: list[LineError] = []

    def report(self, error: LineError) -> None:
        self.failures.append(error)
        for text in error.lines():
            print(text, file=self.errors, flush=True)

    async def send(self, file: str, lines: list[Line]) -> Counts:
        """Write `lines` in one transaction; a line the transaction refuses is reported and
        left out, and the rest is sent again (halved when failures keep coming)."""
        from ..access.dependencies import build_policy

        counts = Counts()
        pending = list(lines)
        retries = 0
        while pending:
            bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [
                {"fullUrl": f"{self.rt.base_url}/{line.ref}", "resource": line.resource,
                 "request": {"method": "PUT", "url": line.ref}} for line in pending]}
            unchanged: set[str] = set()
            try:
                access = await build_policy(self.principal, self.rt)
                result = await self.processor.process(bundle, access, None, unchanged=unchanged)
            except FhirError as exc:
                index = _entry_of(exc)
                if index is None or index >= len(pending):
                    if len(pending) == 1:
                        self.report(LineError(file, pending[0].number, _as_line_issues(
                            exc, pending[0].resource["resourceType"])))
                        counts.failed += 1
                        return counts
                    half = len(pending) // 2
                    for part in (pending[:half], pending[half:]):
                        counts.add(await self.send(file, part))
                    return counts
                bad = pending.pop(index)
                self.report(LineError(file, bad.number,
                                      _as_line_issues(exc, bad.resource["resourceType"])))
                counts.failed += 1
                retries += 1
                if retries >= 3 and len(pending) > 1:
                    # Many bad lines in one batch: smaller transactions find them faster.
                    half = len(pending) // 2
                    for part in (pending[:half], pending[half:]):
                        counts.add(await self.send(file, part))
                    return counts
                continue
            for line, entry in zip(pending, result["entry"], strict=True):
                status = entry["response"]["status"]
                if line.ref in unchanged:
                    counts.unchanged += 1
                elif status.startswith("201"):
                    counts.created += 1
                else:
                    counts.updated += 1
            return counts
        return counts

    async def import_file(self, path: Path, checkpoints: Path | None,
                          progress: Any = None) -> Counts:
        """Import one file, continuing after its checkpoint when there is one."""
        name = str(path)
        cp = Checkpoint.for_file(checkpoints, path) if checkpoints is not None else None
        counts = Counts()
        offset = line_no = 0
        if cp is not None and cp.offset:
            counts, offset, line_no = cp.counts, cp.offset, cp.line
            print(f"{name}: continuing after line {line_no} (checkpoint)", file=self.errors,
                  flush=True)
            if progress is not None:
                progress.update(offset)
        with path.open("rb") as handle:
            handle.seek(offset)
            for batch, consumed, last in self._batches(handle, name, line_no, counts):
                if batch:
                    counts.add(await self.send(name, batch))
                offset += consumed
                if cp is not None:
                    cp.offset, cp.line, cp.counts = offset, last, counts
                    cp.save()
                if progress is not None:
                    progress.update(consumed)
                    progress.set_postfix(created=counts.created, updated=counts.updated,
                                         unchanged=counts.unchanged, failed=counts.failed,
                                         refresh=False)
        if cp is not None:
            cp.remove()
        return counts

    def _batches(self, handle: IO[bytes], name: str, line_no: int,
                 counts: Counts) -> Iterator[tuple[list[Line], int, int]]:
        """(lines, bytes consumed, last line number) per batch; parse errors reported here."""
        batch: list[Line] = []
        refs: set[str] = set()
        consumed = 0
        for raw in handle:
            line_no += 1
            parsed = parse_line(raw, name, line_no)
            if isinstance(parsed, Line) and parsed.ref in refs:
                # The same resource again: it goes into the next transaction.
                yield batch, consumed, line_no - 1
                batch, refs, consumed = [], set(), 0
            consumed += len(raw)
            if parsed is None:
                continue
            counts.lines += 1
            if isinstance(parsed, LineError):
                self.report(parsed)
                counts.failed += 1
                continue
            batch.append(parsed)
            refs.add(parsed.ref)
            if len(batch) >= self.batch:
                yield batch, consumed, line_no
                batch, refs, consumed = [], set(), 0
        if batch or consumed:
            yield batch, consumed, line_no


async def run_import(rt: Runtime, paths: list[Path], batch: int = 500,
                     checkpoints: Path | None = None, show_progress: bool = True,
                     errors: IO[str] | None = None) -> tuple[Counts, list[LineError], float]:
    """Import every NDJSON file of `paths`; (totals, the bad lines, seconds)."""
    from tqdm import tqdm

    files = ndjson_files(paths)
    importer = Importer(rt, batch, errors)
    total = Counts()
    started = time.perf_counter()
    with tqdm(total=sum(f.stat().st_size for f in files), unit="B", unit_scale=True,
              desc="import", file=sys.stderr, disable=not show_progress,
              mininterval=0.5) as progress:
        for path in files:
            total.add(await importer.import_file(path, checkpoints, progress))
    return total, importer.failures, time.perf_counter() - started


def summary(counts: Counts, files: int, seconds: float) -> str:
    rate = (counts.lines / seconds) if seconds > 0 else 0.0
    return (f"imported {counts.lines} lines from {files} file(s) in {seconds:.1f} s "
            f"({rate:.0f} lines/s): {counts.created} created, {counts.updated} updated, "
            f"{counts.unchanged} unchanged, {counts.failed} failed")


def cmd_import(args: Any) -> int:
    """The `pgo-work import` command (registered in `service.cli`). Exit status 0 when every
    line loaded, 2 when some lines were refused (each reported on stderr), 1 on other errors."""
    import asyncio

    from ..config import get_settings
    from ..runtime import build_runtime
    from .common import migrate_database as _migrate

    _migrate()
    settings = get_settings()
    folder = None if args.no_checkpoint else Path(args.checkpoint_dir or
                                                  settings.data_dir / "import-checkpoints")
    paths = [Path(p) for p in args.paths]
    try:
        files = ndjson_files(paths)
    except FileNotFoundError as exc:
        print(f"pgo-work import: {exc}", file=sys.stderr)
        return 1
    if args.restart and folder is not None:
        for path in files:
            Checkpoint.for_file(folder, path).remove()

    async def run() -> tuple[Counts, list[LineError], float]:
        rt = build_runtime(settings)
        try:
            return await run_import(rt, paths, args.batch, folder, not args.no_progress)
        finally:
            await rt.close()

    counts, failures, seconds = asyncio.run(run())
    print(summary(counts, len(files), seconds))
    return 2 if failures or counts.failed else 0


def add_parser(sub: Any) -> None:
    """The `import` sub-command's arguments."""
    imp = sub.add_parser("import", help="load NDJSON resources (a file, or the *.ndjson files "
                                        "of a folder) through the transaction path")
    imp.add_argument("paths", nargs="+", help="FILE.ndjson or DIR")
    imp.add_argument("--batch", type=int, default=500, help="lines per transaction")
    imp.add_argument("--checkpoint-dir", default=None,
                     help="where resumable checkpoints are kept (default DATA_DIR/"
                          "import-checkpoints)")
    imp.add_argument("--no-checkpoint", action="store_true", help="do not keep a checkpoint")
    imp.add_argument("--restart", action="store_true",
                     help="ignore the checkpoints of these files and start from line 1")
    imp.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    imp.set_defaults(fn=cmd_import)
