"""Requests from the event loop run on the thread that owns a confluent-kafka client.

The loop queues a command (a function of the client) and awaits its future; the owning
thread runs the queued commands between two polls and resolves each future on the loop.
A confluent ``KafkaException`` becomes a :class:`connector.kafka.exceptions.KafkaError`
that says whether it is retriable.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import queue
from collections.abc import Callable, Coroutine
from typing import Any, Generic, TypeVar

from confluent_kafka import KafkaException

from connector.kafka.exceptions import ConsumeError, KafkaError, from_kafka_error
from connector.kafka.loop_thread import call_loop

log = logging.getLogger(__name__)

ClientT = TypeVar("ClientT")


def resolve(fut: asyncio.Future[Any], result: Any, exc: BaseException | None) -> None:
    """Settle ``fut`` with ``exc`` or ``result`` unless it is settled already (runs on the loop)."""
    if fut.done():
        return
    if exc is not None:
        fut.set_exception(exc)
    else:
        fut.set_result(result)


def request_failed(exc: KafkaException, what: str = "consumer request failed") -> KafkaError:
    """The connector's error for a ``KafkaException`` raised by a request."""
    err = exc.args[0] if exc.args else None
    if err is not None and hasattr(err, "fatal"):
        return from_kafka_error(ConsumeError, err, what)
    return ConsumeError(f"{what}: {exc}", retriable=True)


def wait_on_loop(loop: asyncio.AbstractEventLoop | None, coro: Coroutine[Any, Any, Any], what: str,
                 timeout: float) -> Any:
    """Run ``coro`` on ``loop`` and block this (non-loop) thread for its result.

    Returns:
        The coroutine's result, or ``None`` when the loop is gone, did not answer within
        ``timeout`` seconds (the coroutine is cancelled), or the coroutine raised (logged).
    """
    if loop is None or loop.is_closed():
        coro.close()
        return None
    fut = asyncio.run_coroutine_threadsafe(coro, loop)
    try:
        return fut.result(timeout=timeout)
    except concurrent.futures.TimeoutError:
        fut.cancel()
        log.error("%s: the event loop did not answer within %.1fs", what, timeout)
    except Exception:
        log.exception("%s failed on the event loop", what)
    return None


class CommandQueue(Generic[ClientT]):
    """Commands queued by the loop for the thread that owns the client."""

    def __init__(self) -> None:
        self._commands: queue.SimpleQueue[tuple[Callable[[ClientT], Any], asyncio.Future[Any]]] = (
            queue.SimpleQueue())
        self._loop: asyncio.AbstractEventLoop | None = None

    def submit(self, command: Callable[[ClientT], Any], refused: BaseException | None = None) -> asyncio.Future[Any]:
        """Queue ``command`` (on the loop).

        Args:
            command: run on the owning thread with the client.
            refused: when given, the thread is not running: the future fails with it at once.

        Returns:
            A future of the command's result; it fails with what the command raised.
        """
        self._loop = asyncio.get_running_loop()
        fut: asyncio.Future[Any] = self._loop.create_future()
        if refused is not None:
            fut.set_exception(refused)
        else:
            self._commands.put((command, fut))
        return fut

    def run_all(self, client: ClientT) -> None:
        """Run every queued command (on the owning thread)."""
        while True:
            try:
                command, fut = self._commands.get_nowait()
            except queue.Empty:
                return
            try:
                result = command(client)
            except KafkaError as exc:
                call_loop(self._loop, resolve, fut, None, exc)
            except KafkaException as exc:
                call_loop(self._loop, resolve, fut, None, request_failed(exc))
            except Exception as exc:
                call_loop(self._loop, resolve, fut, None, exc)
            else:
                call_loop(self._loop, resolve, fut, result, None)

    def fail_all(self, exc: BaseException) -> None:
        """Fail every queued command with ``exc`` (on the owning thread, after closing)."""
        while True:
            try:
                _, fut = self._commands.get_nowait()
            except queue.Empty:
                return
            call_loop(self._loop, resolve, fut, None, exc)
