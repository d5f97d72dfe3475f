"""The `pgo-work` command: serve, worker, migrate, seed-demo, export, and identity administration (dev-token,
add-account, list-accounts, set-password, add-client, list-clients, rotate-key, list-keys,
retire-key: `service.commands.identity`)."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys

from . import __version__
from .commands.common import database_problem, migrate_database, with_engine
from .commands.identity import add_identity_commands
from .config import get_settings


def cmd_migrate(_: argparse.Namespace) -> int:
    migrate_database()
    print("database is at the newest schema")
    return 0


def cmd_seed_demo(_: argparse.Namespace) -> int:
    from .demo.loader import seed
    from .runtime import build_runtime

    migrate_database()

    async def run() -> dict[str, int]:
        from .conformance.publish import publish

        rt = build_runtime(get_settings())
        try:
            await publish(rt)  # the Questionnaires and profiles demo data refers to
            return await seed(rt)
        finally:
            await rt.close()

    counts = asyncio.run(run())
    print("demo data: " + ", ".join(f"{v} {k}" for k, v in counts.items()))
    if not get_settings().oidc_issuer:
        from .access.demo import DEMO_PASSWORD, seed_identities

        created = with_engine(lambda engine: seed_identities(engine, get_settings()))
        for line in created:
            print(f"demo identity: {line}")
        print(f"demo accounts log in with the password {DEMO_PASSWORD!r}")
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    import uvicorn

    from .http_server import server_options
    from .telemetry.multiproc import multiprocess_dir
    from .telemetry.serving import announce, configure

    # Through the environment, so every worker process builds the same Settings: links and the
    # token audience follow --host/--port unless a base URL is configured (--base-url wins).
    os.environ["PGO_WORK_HOST"], os.environ["PGO_WORK_PORT"] = args.host, str(args.port)
    if args.base_url:
        os.environ["PGO_WORK_BASE_URL"] = args.base_url
    os.environ["PGO_WORK_RUN_WORKER"] = "0" if args.no_worker else "1"
    os.environ["PGO_WORK_LOG_FORMAT"] = args.log_format
    get_settings.cache_clear()
    log_config = configure(args.log_format, args.log_level, args.access_log)
    announce(args.log_format, f"pgo-work {__version__}: FHIR base {get_settings().base_url}")
    if not args.no_migrate:
        migrate_database()
    # server_options: the guarded protocol bounds request head and body time, connections per
    # worker, and hands over-long URLs to the app for its 414 (`service.http_server`). The
    # access log is the app's own (`rest.telemetry`: no query string, with the duration).
    with multiprocess_dir(args.workers, get_settings().metrics_dir):
        uvicorn.run("service.main:create_app", factory=True, host=args.host, port=args.port,
                    workers=args.workers, log_level=args.log_level, access_log=False,
                    log_config=log_config, **server_options(get_settings()))
    return 0


def cmd_worker(_: argparse.Namespace) -> int:
    """The background tasks alone, until SIGINT/SIGTERM: as many as wanted beside the servers."""
    import asyncio
    import signal

    from .runtime import build_runtime
    from .telemetry.serving import announce, configure
    from .worker.runner import run
    from .worker.tasks import default_tasks

    fmt = get_settings().log_format
    configure(fmt, access_log=False)

    async def work() -> None:
        runtime = build_runtime(get_settings())
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        tasks = default_tasks()
        announce(fmt, f"pgo-work worker: running {', '.join(t.name for t in tasks) or 'no tasks'}")
        try:
            await run(runtime, tasks, stop)
        finally:
            await runtime.close()

    asyncio.run(work())
    return 0


def main(argv: list[str] | None = None) -> int:
    settings = get_settings()
    parser = argparse.ArgumentParser(prog="pgo-work", description=__doc__)
    parser.add_argument("--version", action="version", version=f"pgo-work {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="serve the FHIR API (migrates first)",
                           formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    serve.add_argument("--host", default=settings.host,
                       help="interface to listen on (PGO_WORK_HOST); 0.0.0.0 for all")
    serve.add_argument("--port", type=int, default=settings.port,
                       help="port to listen on (PGO_WORK_PORT)")
    serve.add_argument("--workers", type=int, default=1,
                       help="uvicorn worker processes (each has its own connection pool)")
    serve.add_argument("--base-url", default=None,
                       help="public FHIR base URL for links and the token audience "
                            "(PGO_WORK_BASE_URL; default http://HOST:PORT/fhir); set it behind "
                            "a proxy")
    serve.add_argument("--log-level", default="info")
    serve.add_argument("--access-log", action=argparse.BooleanOptionalAction, default=True,
                       help="one line per request (method, path without query, status, duration)")
    serve.add_argument("--log-format", choices=["text", "json"], default=settings.log_format,
                       help="json: one JSON object per line with the correlation id "
                            "(PGO_WORK_LOG_FORMAT)")
    serve.add_argument("--no-migrate", action="store_true", help="do not run migrations first")
    serve.add_argument("--no-worker", action="store_true",
                       help="do not run the background tasks (deliveries, exports) in the server "
                            "processes; run `pgo-work worker` instead")
    serve.set_defaults(fn=cmd_serve)
    sub.add_parser("worker", help="run the background tasks (deliveries, exports) without serving "
                                  "the API").set_defaults(fn=cmd_worker)
    sub.add_parser("migrate", help="upgrade the database schema to the newest version").set_defaults(
        fn=cmd_migrate)
    sub.add_parser("seed-demo", help="load the synthetic demo data (idempotent)").set_defaults(
        fn=cmd_seed_demo)
    add_identity_commands(sub)
    from .commands.export import add_parser as add_export
    from .commands.ndjson_import import add_parser as add_import

    add_export(sub)
    add_import(sub)  # pgo-work import FILE.ndjson|DIR
    args = parser.parse_args(argv)
    try:
        return int(args.fn(args))
    except Exception as exc:
        problem = database_problem(exc)
        if problem is None:
            raise
        print(f"pgo-work {args.command}: {problem}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
