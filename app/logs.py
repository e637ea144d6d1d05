"""Logging set-up: JSON lines in production, readable text in development.

The request id travels in a ContextVar (per task, not shared state) so every log line of a
request carries it without passing it around.
"""

from __future__ import annotations

import json
import logging
import sys
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any

import orjson

request_id_var: ContextVar[str] = ContextVar("request_id", default="-")

_STANDARD = set(vars(logging.makeLogRecord({}))) | {"message", "asctime"}


class _RequestIdFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = request_id_var.get()
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        payload: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD:
                payload[key] = value
        if record.exc_info:
            payload["exc"] = self.formatException(record.exc_info)
        # orjson: the access line is written for every request; stdlib json costs ~4x more.
        try:
            return orjson.dumps(payload, default=str).decode()
        except orjson.JSONEncodeError:  # e.g. an int beyond 64 bits in someone's `extra`
            return json.dumps(payload, ensure_ascii=False, default=str)


def configure_logging(*, fmt: str, level: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(_RequestIdFilter())
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(
            logging.Formatter("%(asctime)s %(levelname)-7s [%(request_id)s] %(name)s: %(message)s")
        )
    handler.set_name("hera")
    root = logging.getLogger()
    # Replace only our own handler: a second app in one process (tests) must not stack up
    # duplicates, and handlers installed by others (pytest's caplog) stay.
    root.handlers[:] = [h for h in root.handlers if h.get_name() != "hera"] + [handler]
    root.setLevel(level)
    # uvicorn's own access log would duplicate ours (and log full query strings).
    logging.getLogger("uvicorn.access").disabled = True
    for noisy in ("httpx", "httpcore", "botocore", "aiobotocore", "google_genai", "urllib3"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, logging.getLevelName(level)))
