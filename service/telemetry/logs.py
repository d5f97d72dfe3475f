"""Log format: text (the default, uvicorn's style) or one JSON object per line.

`PGO_WORK_LOG_FORMAT=json` (or `pgo-work serve --log-format json`) makes every line on stderr,
uvicorn's own, the application's and the access log, a JSON object with `time` (UTC, ISO 8601),
`level`, `logger`, `message`, `process` (the pid, which tells `--workers` apart) and, inside a
request, `request_id`: the client's correlation id (MedMij-Request-ID, X-Request-Id or
X-Correlation-ID, as echoed by `rest.middleware.CorrelationIds`), so a client's log and ours
join on it. Access lines add `method`, `route` (the path only: a query string can name a
patient), `status`, `duration_ms`, `interaction`, `resource_type`, `operation` and `client`.
"""

from __future__ import annotations

import json
import logging
import traceback
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any

from uvicorn.logging import DefaultFormatter

request_id: ContextVar[str | None] = ContextVar("pgo_work_request_id", default=None)
"""The correlation id of the request being served in this context, if the client sent one."""

ACCESS_FIELDS = ("method", "route", "status", "duration_ms", "interaction", "resource_type",
                 "operation", "client")
LEVELS = ("CRITICAL", "ERROR", "WARNING", "INFO", "DEBUG")
ACCESS_LOGGER = "pgo_work.access"


class RequestIdFilter(logging.Filter):
    """Put the context's correlation id on every record (`record.request_id`)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "request_id", None) is None:
            record.request_id = request_id.get()
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per record, on one line (newlines inside values are escaped)."""

    def format(self, record: logging.LogRecord) -> str:
        stamp = datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds")
        out: dict[str, Any] = {"time": stamp.replace("+00:00", "Z"), "level": record.levelname,
                               "logger": record.name, "message": record.getMessage(),
                               "process": record.process}
        rid = getattr(record, "request_id", None) or request_id.get()
        if rid:
            out["request_id"] = rid
        for name in ACCESS_FIELDS:
            value = getattr(record, name, None)
            if value is not None:
                out[name] = value
        if record.exc_info:
            out["exception"] = "".join(traceback.format_exception(*record.exc_info)).rstrip()
        return json.dumps(out, ensure_ascii=False, default=str)


class TextFormatter(DefaultFormatter):
    """uvicorn's text style (`INFO:     message`), with the correlation id when there is one."""

    def formatMessage(self, record: logging.LogRecord) -> str:  # noqa: N802 (logging's name)
        text = super().formatMessage(record)
        rid = getattr(record, "request_id", None)
        return f"{text} request_id={rid}" if rid else text


def _level(level: str) -> str:
    upper = level.upper()
    return upper if upper in LEVELS else "DEBUG"  # uvicorn's `trace`: as much as there is


def logging_config(fmt: str, level: str = "info", access_log: bool = True) -> dict[str, Any]:
    """A `logging.config.dictConfig` for uvicorn (`log_config`) and the worker command.

    uvicorn's own access log is turned off by `serve` (it prints the query string and no
    duration): `pgo_work.access`, written by `rest.telemetry.RequestTelemetry`, replaces it.
    """
    formatter: dict[str, Any]
    if fmt == "json":
        formatter = {"()": "service.telemetry.logs.JsonFormatter"}
        plain = app = formatter
    else:
        plain = {"()": "service.telemetry.logs.TextFormatter", "fmt": "%(levelprefix)s %(message)s"}
        app = {"()": "service.telemetry.logs.TextFormatter",
               "fmt": "%(levelprefix)s %(name)s: %(message)s"}
    handler = {"class": "logging.StreamHandler", "stream": "ext://sys.stderr",
               "filters": ["request_id"]}
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {"request_id": {"()": "service.telemetry.logs.RequestIdFilter"}},
        "formatters": {"plain": plain, "app": app},
        "handlers": {"plain": {**handler, "formatter": "plain"},
                     "app": {**handler, "formatter": "app"}},
        "root": {"handlers": ["app"], "level": "WARNING"},
        "loggers": {
            "uvicorn": {"handlers": ["plain"], "level": _level(level), "propagate": False},
            "uvicorn.error": {"level": _level(level), "propagate": True},
            "uvicorn.access": {"handlers": [], "level": "WARNING", "propagate": False},
            "pgo_work": {"level": _level(level), "propagate": True},
            ACCESS_LOGGER: {"handlers": ["plain"], "propagate": False,
                            "level": _level(level) if access_log else "WARNING"},
            "service": {"level": _level(level), "propagate": True},
        },
    }
