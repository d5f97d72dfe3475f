"""What `pgo-work serve` and `pgo-work worker` set up before they run: the log format (for
every process, uvicorn's workers included) and the shared metrics folder for `--workers N`.
Kept out of `cli.py`, which only parses arguments and calls these."""

from __future__ import annotations

import logging
import logging.config
import sys
from typing import Any

from .logs import logging_config

log = logging.getLogger("pgo_work.serve")


def configure(fmt: str, level: str = "info", access_log: bool = True) -> dict[str, Any]:
    """Apply the log configuration to this process and return it for uvicorn's `log_config`
    (uvicorn applies it again in each worker process it starts)."""
    config = logging_config(fmt, level, access_log)
    logging.config.dictConfig(config)
    return config


def announce(fmt: str, message: str) -> None:
    """A start-up line: printed as before in text, a log record (one JSON line) in json, so
    stderr stays one object per line."""
    if fmt == "json":
        log.info(message)
    else:
        print(message, file=sys.stderr)
