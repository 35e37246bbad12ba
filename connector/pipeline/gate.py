"""The send gate: may a batch go to CXone now? Every check must say yes (fail closed).

A check is a callable returning ``(ok, reason)``: the DNC table is current, every DNC list
with an age limit is fresh enough, ... The first failing check's reason is what
``/readyz`` and the logs show. The gate is asked before a batch is handed to delivery and
again before every submit attempt (``connector.pipeline.ingest.IngestPipeline.check_at_send``).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence

log = logging.getLogger(__name__)

#: ``() -> (ok, reason)``; the reason says what is wrong (or what is fine).
Check = Callable[[], tuple[bool, str]]


class SendGate:
    """The conjunction of ``checks``.

    Args:
        checks: asked in order; the first that fails closes the gate.
        poll_s: how often :meth:`wait_open` asks again while the gate is closed.
    """

    def __init__(self, checks: Sequence[Check], *, poll_s: float = 0.1) -> None:
        self._checks = list(checks)
        self._poll_s = poll_s
        self._logged: str | None = None

    def add(self, check: Check) -> None:
        """Ask ``check`` too from now on."""
        self._checks.append(check)

    def status(self) -> tuple[bool, str]:
        """``(True, "open")`` when every check passes, else ``(False, reason)`` of the first
        that fails. A check that raises counts as failed (never as open)."""
        for check in self._checks:
            try:
                ok, reason = check()
            except Exception as exc:  # a broken check closes the gate: fail closed, visibly
                return False, f"send check failed: {type(exc).__name__}"
            if not ok:
                return False, reason
        return True, "open"

    async def wait_open(self) -> None:
        """Return once the gate is open (logs when it is found closed, once per reason)."""
        while True:
            ok, reason = self.status()
            if ok:
                if self._logged is not None:
                    log.info("sending resumes: %s", reason)
                    self._logged = None
                return
            if reason != self._logged:
                log.warning("sending held: %s", reason)
                self._logged = reason
            await asyncio.sleep(self._poll_s)


def always_open() -> tuple[bool, str]:
    """A check that never closes the gate (tests, tools)."""
    return True, "open"
