"""Opt-outs that reach CXone: numbers added to a CXone DNC group.

The window cancels an opt-in that has not been sent yet. An opt-in that already reached a
calling list before its contact opted out stays on that list: neither API profile lets the
connector delete it by contact. The ``call-lists`` profile has the published remedy: a DNC
group, whose numbers the skills it scrubs never dial. With ``cxone.dnc_group_id`` set, every
CRM opt-out's number is added to that group, and the opt-out's offset settles only once
CXone has acknowledged it (at-least-once, like every other settlement).

Numbers are sent in batches (up to ``max_batch`` numbers, or whatever arrived within
``linger_s``). A retriable failure is retried with capped backoff for as long as it takes,
since settlement waits on it (backpressure does the rest); a fatal answer (a 4xx such as an
unknown group) fails the numbers' futures, which stops the pipeline with that error: a
misconfigured group must not let opt-outs settle silently.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Iterator

from connector.cxone.exceptions import CXoneError, RetriesExhaustedError

log = logging.getLogger(__name__)

AddRecords = Callable[[str, list[str]], Awaitable[None]]


class DncGroupPusher:
    """Batches numbers into ``POST /dnc-groups/{groupId}/records`` calls.

    Args:
        add_records: the client call, ``CallListsClient.add_dnc_records``.
        group_id: the CXone DNC group.
        delays: backoff between retries of a failed batch (an endless iterator).
        max_batch: numbers per request at most.
        linger_s: how long the first number of a batch waits for company.
    """

    def __init__(self, add_records: AddRecords, group_id: str, *, delays: Callable[[], Iterator[float]],
                 max_batch: int = 1000, linger_s: float = 0.2) -> None:
        self._add = add_records
        self.group_id = group_id
        self._delays = delays
        self._max_batch = max_batch
        self._linger_s = linger_s
        self._pending: list[tuple[str, asyncio.Future[None]]] = []
        self._sending: list[tuple[str, asyncio.Future[None]]] = []
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        #: Numbers CXone acknowledged since start.
        self.pushed = 0

    def push(self, e164: str) -> asyncio.Future[None]:
        """Queue one number; the future resolves once CXone acknowledged it.

        Raises:
            RuntimeError: before :meth:`start`.
        """
        if self._task is None:
            raise RuntimeError("DncGroupPusher.start() was not called")
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pending.append((e164, fut))
        self._wake.set()
        return fut

    async def start(self) -> None:
        """Start the background sender."""
        self._task = asyncio.create_task(self._run(), name="dnc-group-pusher")

    async def close(self) -> None:
        """Stop; numbers not yet acknowledged are cancelled (their offsets stay uncommitted)."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        for _, fut in self._sending + self._pending:
            fut.cancel()
        self._pending.clear()

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            await asyncio.sleep(self._linger_s)
            batch, self._pending = self._pending[: self._max_batch], self._pending[self._max_batch:]
            if not self._pending:
                self._wake.clear()
            if batch:
                self._sending = batch
                await self._send(batch)
                self._sending = []

    async def _send(self, batch: list[tuple[str, asyncio.Future[None]]]) -> None:
        numbers = sorted({number for number, _ in batch})
        delays = self._delays()
        while True:
            try:
                await self._add(self.group_id, numbers)
            except CXoneError as exc:
                # the client gives up on a retriable failure after its own attempts; we do not
                if not exc.retriable and not isinstance(exc, RetriesExhaustedError):
                    log.error("CXone refused %d opt-out number(s) for DNC group %s: %s",
                              len(numbers), self.group_id, exc)
                    for _, fut in batch:
                        if not fut.done():
                            fut.set_exception(exc)
                    return
                delay = next(delays)
                log.warning("adding %d opt-out number(s) to DNC group %s failed (%s); retrying in %.1fs",
                            len(numbers), self.group_id, type(exc).__name__, delay)
                await asyncio.sleep(delay)
                continue
            self.pushed += len(numbers)
            for _, fut in batch:
                if not fut.done():
                    fut.set_result(None)
            return
