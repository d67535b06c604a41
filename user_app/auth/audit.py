"""The audit log: one line for every write, delete, rename, undelete and key change, saying who (the
access key id), what, and the result (README "Security"). Logger ``ringfs.audit``; with
``LOG_FORMAT=json`` each line is a JSON object with ``access_key``, ``action``, ``target`` and ``result``."""

from __future__ import annotations

import contextlib
import logging
from typing import Iterator

from shared.errors import RingFSError
from user_app.auth.principal import Principal

log = logging.getLogger("ringfs.audit")


@contextlib.contextmanager
def audited(principal: Principal, action: str, target: str) -> Iterator[dict]:
    """Log one audit line when the block ends: ``result`` is ``ok`` (plus what the block put in the
    yielded dict, e.g. a version), or the status of the error that left the block."""
    details: dict = {}
    try:
        yield details
    except RingFSError as exc:
        _line(principal, action, target, str(exc.status))
        raise
    except Exception:
        _line(principal, action, target, "500")
        raise
    _line(principal, action, target, "ok", details)


def _line(principal: Principal, action: str, target: str, result: str, details: dict | None = None) -> None:
    extra = {"access_key": principal.access_key, "action": action, "target": target, "result": result,
             **(details or {})}
    more = "".join(f" {k}={v}" for k, v in (details or {}).items())
    log.info("audit: key=%s action=%s target=%r result=%s%s", principal.access_key, action, target, result, more,
             extra=extra)
