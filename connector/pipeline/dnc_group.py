"""Opt-outs that reach CXone: numbers added to (and released from) a CXone DNC group.

The window cancels an opt-in that has not been sent yet. An opt-in that already reached a
calling list before its contact opted out stays on that list: neither API profile lets the
connector delete it by contact. The ``call-lists`` profile has the published remedy: a DNC
group, whose numbers the skills it scrubs never dial. With ``cxone.dnc_group_id`` set:

- every CRM opt-out's number is **added** to the group, and the opt-out's offset settles only
  once CXone acknowledged it (at-least-once, like every other settlement);
- a later opt-in of a number this instance added **releases** it (``DELETE`` on the same
  records) just before its batch is submitted, so the CRM's latest consent wins. A release
  does not hold up settlement: if it is lost (a crash, or an opt-out added before a
  restart), the number stays blocked, which errs on the safe side.

Operations run in the order they were queued; consecutive operations of the same kind are
sent together (up to ``max_batch`` numbers, or whatever arrived within ``linger_s``). A
retriable failure is retried with capped backoff for as long as it takes; a fatal answer (a
4xx such as an unknown group) fails the numbers' futures, which stops the pipeline: a
misconfigured group must not let opt-outs settle silently.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Iterable, Iterator
from dataclasses import dataclass

from pyroaring import BitMap64

from connector.core.dnc_table import e164_to_int
from connector.cxone.exceptions import CXoneError, RetriesExhaustedError
from connector.ops.supervisor import Supervisor

log = logging.getLogger(__name__)

Records = Callable[[str, list[str]], Awaitable[None]]

ADD = "add"
REMOVE = "remove"


@dataclass(frozen=True, slots=True)
class _Op:
    kind: str
    number: str
    future: asyncio.Future[None] | None


class DncGroupPusher:
    """Batches numbers into ``POST``/``DELETE /dnc-groups/{groupId}/records`` calls.

    Args:
        add_records: ``CallListsClient.add_dnc_records``.
        remove_records: ``CallListsClient.remove_dnc_records``.
        group_id: the CXone DNC group.
        delays: backoff between retries of a failed call (an endless iterator per call).
        max_batch: numbers per request at most.
        linger_s: how long the first number of a batch waits for company.
    """

    def __init__(self, add_records: Records, remove_records: Records, group_id: str, *,
                 delays: Callable[[], Iterator[float]], max_batch: int = 1000, linger_s: float = 0.2) -> None:
        self._calls = {ADD: add_records, REMOVE: remove_records}
        self.group_id = group_id
        self._delays = delays
        self._max_batch = max_batch
        self._linger_s = linger_s
        self._queue: list[_Op] = []
        self._sending: list[_Op] = []
        #: Numbers this instance has put in the group (a compressed set: cheap at any size).
        self._added = BitMap64()
        self._wake = asyncio.Event()
        self._task: asyncio.Future[None] | None = None
        self._supervisor: Supervisor | None = None
        #: Numbers CXone acknowledged since start, per operation.
        self.done = {ADD: 0, REMOVE: 0}

    def push(self, e164: str) -> asyncio.Future[None]:
        """Queue an opt-out's number; the future resolves once CXone acknowledged it.

        Raises:
            RuntimeError: before :meth:`start`.
        """
        if self._task is None:
            raise RuntimeError("DncGroupPusher.start() was not called")
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._added.add(e164_to_int(e164))
        self._enqueue(_Op(ADD, e164, fut))
        return fut

    def release(self, numbers: Iterable[str]) -> int:
        """Queue the removal of those ``numbers`` this instance added (opted in again).

        Returns:
            How many removals were queued.
        """
        queued = 0
        for e164 in numbers:
            key = e164_to_int(e164)
            if key in self._added:
                self._added.discard(key)
                self._enqueue(_Op(REMOVE, e164, None))
                queued += 1
        return queued

    def _enqueue(self, op: _Op) -> None:
        self._queue.append(op)
        self._wake.set()

    async def start(self, supervisor: Supervisor | None = None) -> None:
        """Start the background sender (restarted with backoff by ``supervisor`` when it fails
        unexpectedly; what it was sending goes back to the head of the queue)."""
        if supervisor is not None:
            self._supervisor = supervisor
            supervisor.spawn("dnc-group-pusher", self._run)
            self._task = asyncio.get_running_loop().create_future()  # started: push() may queue
        else:
            self._task = asyncio.create_task(self._run(), name="dnc-group-pusher")

    async def close(self) -> None:
        """Stop; additions not yet acknowledged are cancelled (their offsets stay uncommitted)."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        for op in self._sending + self._queue:
            if op.future is not None:
                op.future.cancel()
        self._queue.clear()

    async def _run(self) -> None:
        if self._sending:  # restarted after a failure: send those again first
            self._queue[:0] = self._sending
            self._sending = []
            self._wake.set()
        while True:
            await self._wake.wait()
            await asyncio.sleep(self._linger_s)
            if not self._queue:
                self._wake.clear()
                continue
            kind = self._queue[0].kind
            run = 0
            while run < min(len(self._queue), self._max_batch) and self._queue[run].kind == kind:
                run += 1
            self._sending, self._queue = self._queue[:run], self._queue[run:]
            if not self._queue:
                self._wake.clear()
            await self._send(kind, self._sending)
            self._sending = []

    async def _send(self, kind: str, ops: list[_Op]) -> None:
        numbers = sorted({op.number for op in ops})
        delays = self._delays()
        while True:
            try:
                await self._calls[kind](self.group_id, numbers)
                break
            except CXoneError as exc:
                # the client gives up on a retriable failure after its own attempts; we do not
                if not exc.retriable and not isinstance(exc, RetriesExhaustedError):
                    log.error("CXone refused to %s %d number(s) in DNC group %s: %s",
                              kind, len(numbers), self.group_id, exc)
                    for op in ops:
                        if op.future is not None and not op.future.done():
                            op.future.set_exception(exc)
                    return
                delay = next(delays)
                log.warning("%s of %d number(s) in DNC group %s failed (%s); retrying in %.1fs",
                            kind, len(numbers), self.group_id, type(exc).__name__, delay)
                await asyncio.sleep(delay)
        self.done[kind] += len(numbers)
        for op in ops:
            if op.future is not None and not op.future.done():
                op.future.set_result(None)
