"""The `pgo-work` command: serve, migrate, seed-demo."""

from __future__ import annotations

import argparse
import asyncio
import sys

from .config import get_settings


def _migrate() -> None:
    from .store.migrate import upgrade

    upgrade(get_settings().resolved_database_url())


def cmd_migrate(_: argparse.Namespace) -> int:
    _migrate()
    print("database is at the newest schema")
    return 0


def cmd_seed_demo(_: argparse.Namespace) -> int:
    from .demo.loader import seed
    from .runtime import build_runtime

    _migrate()

    async def run() -> dict[str, int]:
        rt = build_runtime(get_settings())
        try:
            return await seed(rt)
        finally:
            await rt.close()

    counts = asyncio.run(run())
    print("demo data: " + ", ".join(f"{v} {k}" for k, v in counts.items()))
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    import uvicorn

    if not args.no_migrate:
        _migrate()
    uvicorn.run("service.main:create_app", factory=True, host=args.host, port=args.port,
                workers=args.workers, log_level=args.log_level, access_log=args.access_log)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="pgo-work", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="serve the FHIR API (migrates first)")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8080)
    serve.add_argument("--workers", type=int, default=1)
    serve.add_argument("--log-level", default="info")
    serve.add_argument("--access-log", action=argparse.BooleanOptionalAction, default=True)
    serve.add_argument("--no-migrate", action="store_true", help="do not run migrations first")
    serve.set_defaults(fn=cmd_serve)
    sub.add_parser("migrate", help="upgrade the database schema to the newest version").set_defaults(
        fn=cmd_migrate)
    sub.add_parser("seed-demo", help="load the synthetic demo data (idempotent)").set_defaults(
        fn=cmd_seed_demo)
    args = parser.parse_args(argv)
    return int(args.fn(args))


if __name__ == "__main__":
    sys.exit(main())
