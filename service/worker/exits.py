"""How the worker ends when no retry can help: at once, with a code that says why.

Crash-only, like `kill -9`: nothing on the way out may commit or acknowledge anything,
because Faust acknowledges a batch as it is left, applied or not. The code tells the
supervisor what to expect of a restart (sysexits): 75 (temporary failure) when the
restart itself is the cure, a partition having to be positioned afresh; 70 (internal
software error) for anything unexpected.
"""

from __future__ import annotations

import logging
import os
from typing import NoReturn, Protocol

from service.worker.claims import RepositionRequired

log = logging.getLogger(__name__)

EX_SOFTWARE = 70
EX_TEMPFAIL = 75


class Crash(Protocol):
    def __call__(self, reason: str, code: int) -> NoReturn: ...


def crash(reason: str, code: int) -> NoReturn:
    """Log `reason` (if any), flush the logs, and end the process without any cleanup."""
    if reason:
        log.critical("%s", reason)
    logging.shutdown()
    os._exit(code)


def exit_for(exc: BaseException, doing: str, crash: Crash = crash) -> NoReturn:
    """End the worker for `exc`, raised while `doing` something no retry can finish."""
    if isinstance(exc, RepositionRequired):
        crash(str(exc), EX_TEMPFAIL)
    log.critical("unexpected error %s; exiting", doing, exc_info=exc)
    crash("", EX_SOFTWARE)
