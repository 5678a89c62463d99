"""`LIFECYCLE_LOG_FORMAT=json`: one JSON object per line, with the record's partition,
offset and topic when the code passed them, and an error's trace."""

from __future__ import annotations

import io
import logging
import logging.config
import sys

import orjson

from service.cli.logs import JsonFormatter, logging_config


def _line(record: logging.LogRecord) -> dict[str, object]:
    doc: dict[str, object] = orjson.loads(JsonFormatter().format(record))
    return doc


def test_a_record_with_context_and_an_error() -> None:
    logger = logging.getLogger("service.worker.processor")
    record = logger.makeRecord(
        logger.name, logging.ERROR, __file__, 1, "partition %d: %s", (3, "boom"), None,
        extra={"partition": 3, "offset": 41, "topic": "user-events"},
    )  # fmt: skip
    doc = _line(record)
    assert doc["level"] == "ERROR" and doc["logger"] == "service.worker.processor"
    assert doc["message"] == "partition 3: boom"
    assert (doc["partition"], doc["offset"], doc["topic"]) == (3, 41, "user-events")
    assert str(doc["time"]).endswith("+00:00")
    try:
        raise ValueError("bad value\nsecond line")
    except ValueError:
        record = logger.makeRecord(logger.name, logging.ERROR, __file__, 1, "failed", (), sys.exc_info())
    doc = _line(record)
    assert "ValueError: bad value" in str(doc["exception"]) and "partition" not in doc


def test_the_configured_handler_writes_one_line_per_record() -> None:
    config = logging_config("json", "INFO")
    stream = io.StringIO()
    config["handlers"]["default"]["stream"] = stream
    logging.config.dictConfig(config)
    try:
        logging.getLogger("lifecycle").info("two\nlines %s", "in one record")
        logging.getLogger("lifecycle").debug("below the level")
    finally:
        logging.config.dictConfig(logging_config("text", "INFO"))
    (line,) = stream.getvalue().splitlines()
    assert orjson.loads(line)["message"] == "two\nlines in one record"


def test_logs_go_to_stderr_so_a_commands_output_stays_clean() -> None:
    for log_format in ("text", "json"):
        assert logging_config(log_format, "INFO")["handlers"]["default"]["stream"] == "ext://sys.stderr"
