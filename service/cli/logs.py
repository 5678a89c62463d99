"""Log output: text for a terminal, or one JSON object per line for log pipelines.

`LIFECYCLE_LOG_FORMAT=json` (the image's default) writes `time` (RFC 3339, UTC), `level`,
`logger`, `message`, `partition` and `offset` where the code knows them (passed as
`extra`), and `exception` with the trace of an error. Every process uses it: the worker
(through Faust's logging set-up), the API (uvicorn's loggers included) and the commands.
"""

from __future__ import annotations

import logging
import logging.config
import os
from datetime import UTC, datetime
from typing import Any

import orjson

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
CONTEXT_FIELDS = ("partition", "offset", "topic")


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name in CONTEXT_FIELDS:
            value = record.__dict__.get(name)
            if value is not None:
                doc[name] = value
        if record.exc_info:
            doc["exception"] = self.formatException(record.exc_info)
        elif record.stack_info:
            doc["stack"] = self.formatStack(record.stack_info)
        return orjson.dumps(doc, default=str).decode()


def logging_config(log_format: str, level: str | int) -> dict[str, Any]:
    """A `logging.config.dictConfig` document: one stderr handler in the chosen format
    (stdout stays for what a command outputs: an audience export, say)."""
    formatter: dict[str, Any] = (
        {"()": f"{__name__}.JsonFormatter"} if log_format == "json" else {"format": TEXT_FORMAT}
    )
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"default": formatter},
        "handlers": {
            "default": {
                "class": "logging.StreamHandler",
                "formatter": "default",
                "stream": "ext://sys.stderr",
            }
        },
        "root": {"level": level, "handlers": ["default"]},
    }


def configure(log_format: str, level: str | int = logging.INFO) -> None:
    logging.config.dictConfig(logging_config(log_format, level))


def format_from_environment() -> str:
    """The format before the settings are read (a bad setting must be reported in it too)."""
    value = os.environ.get("LIFECYCLE_LOG_FORMAT", "text").strip().lower()
    return value if value in ("text", "json") else "text"
