"""Supervised long-lived tasks: every one either restarts with backoff or stops the app.

A long-lived task that dies silently is a stall nobody sees: a monitor that no longer polls,
a pusher whose queued opt-outs never settle. Each such task is started through a
:class:`Supervisor` with a policy:

- ``restart``: an unexpected exception is logged with the task's name and counted, and the
  task is started again after a backoff delay. Too many restarts in a short time
  (``max_restarts`` within ``window_s``) mean it cannot recover: the supervisor fails.
- ``stop``: the first unexpected exception fails the supervisor.

A failed supervisor is visible: :meth:`Supervisor.wait` raises its error (the app then exits
with code 1, the log line naming the task), and :meth:`Supervisor.dead` names the dead task
for ``/healthz``. Cancellation (shutdown) is never a failure.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from typing import Literal

from connector.errors import ConnectorError

log = logging.getLogger(__name__)

Policy = Literal["restart", "stop"]


class TaskFailedError(ConnectorError):
    """A supervised task failed beyond its policy (not retriable: the app stops).

    Attributes:
        task: the task's name.
    """

    def __init__(self, task: str, cause: BaseException) -> None:
        self.task = task
        super().__init__(f"task {task} failed: {type(cause).__name__}: {cause}")
        self.__cause__ = cause


@dataclass
class _Entry:
    name: str
    factory: Callable[[], Awaitable[None]]
    policy: Policy
    task: asyncio.Task[None] | None = None
    restarts: list[float] = field(default_factory=list)
    delays: Iterator[float] | None = None


class Supervisor:
    """Starts named tasks and watches them.

    Args:
        delays: a fresh backoff sequence per restart streak.
        max_restarts: restarts allowed within ``window_s`` before the supervisor fails.
        window_s: the restart-counting window.
        on_restart: called with the task's name at every restart (a metric).
    """

    def __init__(self, delays: Callable[[], Iterator[float]], *, max_restarts: int = 5, window_s: float = 60.0,
                 on_restart: Callable[[str], None] | None = None) -> None:
        self._delays = delays
        self._max_restarts = max_restarts
        self._window_s = window_s
        self._on_restart = on_restart
        self._entries: dict[str, _Entry] = {}
        self._failure: TaskFailedError | None = None
        self._failed = asyncio.Event()
        self._closing = False

    def spawn(self, name: str, factory: Callable[[], Awaitable[None]], *, policy: Policy = "restart") -> None:
        """Start ``factory()`` as the task ``name`` (a coroutine that normally runs until
        cancelled; returning is fine and ends it).

        Raises:
            ValueError: a task of that name is already supervised.
        """
        if name in self._entries:
            raise ValueError(f"task {name} is already supervised")
        entry = self._entries[name] = _Entry(name, factory, policy)
        self._start(entry)

    def _start(self, entry: _Entry) -> None:
        entry.task = asyncio.get_running_loop().create_task(self._run(entry), name=entry.name)

    async def _run(self, entry: _Entry) -> None:
        while True:
            try:
                await entry.factory()
                return
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if self._closing:
                    return
                log.error("task %s failed: %s: %s", entry.name, type(exc).__name__, exc, exc_info=exc)
                if entry.policy == "stop" or not self._may_restart(entry):
                    self._fail(entry.name, exc)
                    return
            if entry.delays is None:
                entry.delays = self._delays()
            delay = next(entry.delays)
            log.warning("restarting task %s in %.1fs", entry.name, delay)
            if self._on_restart is not None:
                self._on_restart(entry.name)
            await asyncio.sleep(delay)

    def _may_restart(self, entry: _Entry) -> bool:
        now = time.monotonic()
        entry.restarts = [t for t in entry.restarts if now - t < self._window_s] + [now]
        if len(entry.restarts) == 1:
            entry.delays = None  # a new streak starts from the first delay again
        return len(entry.restarts) <= self._max_restarts

    def _fail(self, name: str, exc: BaseException) -> None:
        if self._failure is None:
            self._failure = TaskFailedError(name, exc)
        self._failed.set()

    def watch(self, name: str, coro: Awaitable[None]) -> asyncio.Task[None]:
        """Run a short-lived ``coro`` as a task whose unexpected failure fails the supervisor
        (policy ``stop``): a one-off send, a delivery, never left to die unseen.

        Returns:
            The task (cancel it to stop it; cancellation is not a failure).
        """
        task: asyncio.Task[None] = asyncio.ensure_future(coro)

        def done(t: asyncio.Task[None]) -> None:
            if t.cancelled() or self._closing:
                return
            exc = t.exception()
            if exc is not None:
                self.fail(name, exc)

        task.add_done_callback(done)
        return task

    def fail(self, name: str, exc: BaseException) -> None:
        """Report a failure found outside a supervised task (a callback, a future)."""
        log.error("%s failed: %s: %s", name, type(exc).__name__, exc)
        self._fail(name, exc)

    @property
    def failure(self) -> TaskFailedError | None:
        """What failed the supervisor, if anything."""
        return self._failure

    def dead(self) -> str | None:
        """The name of a supervised task that ended by failing, or None."""
        if self._failure is not None:
            return self._failure.task
        return None

    async def wait(self) -> None:
        """Return only by raising what failed a task beyond its policy.

        Raises:
            TaskFailedError: naming the task and its cause.
        """
        await self._failed.wait()
        assert self._failure is not None  # noqa: S101 - set before the event
        raise self._failure

    async def close(self) -> None:
        """Cancel every task and wait for them."""
        self._closing = True
        tasks = [e.task for e in self._entries.values() if e.task is not None]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
