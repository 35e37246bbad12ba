"""Run a :class:`Simulator` in a background thread, for synchronous code (``requests``)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from types import TracebackType
from typing import TypeVar

from connector.simulator.config import SimulatorConfig
from connector.simulator.exceptions import SimulatorError
from connector.simulator.server import Simulator

T = TypeVar("T")


class SimulatorThread:
    """A simulator on its own event loop in a daemon thread.

    Use ``url = t.start()`` ... ``t.stop()``, or ``with SimulatorThread(cfg) as url: ...``.
    Touch the simulator only through :meth:`call`, which runs on its loop.
    """

    def __init__(self, config: SimulatorConfig | None = None, host: str = "127.0.0.1", port: int = 0) -> None:
        self.simulator = Simulator(config)
        self._host = host
        self._port = port
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None

    @property
    def url(self) -> str:
        return self.simulator.url

    def start(self, timeout: float = 10.0) -> str:
        """Start the simulator; returns its URL.

        Raises:
            SimulatorError: it did not start within ``timeout`` or failed to bind.
        """
        self._thread = threading.Thread(target=self._run, name="cxone-simulator", daemon=True)
        self._thread.start()
        if not self._ready.wait(timeout):
            raise SimulatorError("the simulator thread did not start in time")
        if self._error is not None:
            raise SimulatorError(f"the simulator failed to start: {self._error}") from self._error
        return self.simulator.url

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        try:
            loop.run_until_complete(self.simulator.start(self._host, self._port))
        except BaseException as exc:  # reported to start() in the calling thread
            self._error = exc
            self._ready.set()
            loop.close()
            return
        self._ready.set()
        try:
            loop.run_forever()
        finally:
            loop.run_until_complete(self.simulator.stop())
            loop.close()

    def call(self, fn: Callable[[], T], timeout: float = 10.0) -> T:
        """Run ``fn()`` on the simulator's loop and return its result (e.g. read the state)."""
        if self._loop is None:
            raise SimulatorError("the simulator thread is not running")

        async def run() -> T:
            return fn()

        return asyncio.run_coroutine_threadsafe(run(), self._loop).result(timeout)

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the simulator and join the thread."""
        if self._loop is not None and self._thread is not None and self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout)
        self._thread = None

    def __enter__(self) -> str:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


__all__ = ["SimulatorThread"]
