"""The group consumer of the CRM topic, owned by one dedicated thread.

librdkafka's consumer is not meant to be driven from several threads, and its rebalance
callbacks run inside ``consume()``. So one thread owns the ``Consumer`` and does *every*
call on it:

* it calls ``consume(num_messages=..., timeout=...)`` in a loop and hands each non-empty
  list of messages to the asyncio loop with ``loop.call_soon_threadsafe`` (into an
  :class:`asyncio.Queue` read by :meth:`ConsumerThread.get_batch`);
* between two polls it drains a thread-safe command queue: the loop's ``pause``,
  ``resume`` and ``commit`` requests run there, and each answers through an asyncio future;
* the rebalance callbacks run there too. With ``cooperative-sticky`` they are incremental:
  ``on_assign`` receives only the partitions added and ``on_revoke`` only those taken away,
  and the thread calls ``incremental_assign`` / ``incremental_unassign`` itself (plain
  ``assign`` / ``unassign`` under an eager strategy).

On revoke the thread blocks, up to ``revoke_timeout_s``, on a coroutine it runs on the
loop (``asyncio.run_coroutine_threadsafe(...).result(timeout)``): that coroutine drops the
revoked partitions' records still queued for the loop, then asks the
:class:`RebalanceListener` to drop its buffered records and tracker state and to return
what is committable for them; the thread commits that synchronously and only then lets the
revoke complete. Lost partitions (``on_lost``) are dropped the same way but never committed:
another member may own them already.

Bounded hand-off: when ``max_pending_batches`` lists wait in the queue, the thread first
*holds* (stops consuming, for at most ``flow_hold_s``), then pauses every partition until the
loop has caught up; the pauses the loop asks for (backpressure) are kept apart. The
decisions are :class:`connector.core.pausing.PausingManager`'s; the thread applies them.

:attr:`ConsumerThread.last_poll` is the monotonic time of the last completed poll, for
``/healthz``. The optional ``stats_cb`` receives librdkafka's statistics JSON on the
consumer thread every ``statistics_interval_ms``.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import queue
import threading
import time
from collections.abc import Callable, Coroutine, Iterable, Mapping, Sequence
from typing import Any, Protocol

from confluent_kafka import Consumer, KafkaException, Message, TopicPartition
from confluent_kafka import KafkaError as RdKafkaError

from connector.core.models import TP
from connector.core.pausing import PausingManager
from connector.kafka.client_config import LIBRDKAFKA_LOGGER
from connector.kafka.exceptions import CommitError, ConsumeError, KafkaError, from_kafka_error

log = logging.getLogger(__name__)

Command = Callable[[Consumer], Any]

# librdkafka's local error codes carry a leading underscore; read them once, by name.
_PARTITION_EOF: int = getattr(RdKafkaError, "_PARTITION_EOF")  # noqa: B009
_NO_OFFSET: int = getattr(RdKafkaError, "_NO_OFFSET")  # noqa: B009


class RebalanceListener(Protocol):
    """What the loop side does on rebalances. Every method runs on the event loop."""

    def on_assigned(self, tps: list[TP]) -> None:
        """Partitions were added to this member's assignment."""

    async def on_revoked(self, tps: list[TP]) -> Mapping[TP, int]:
        """Partitions are being taken away: drop their state.

        Returns:
            The offsets to commit for (some of) ``tps`` before the revoke completes.
        """
        ...

    def on_lost(self, tps: list[TP]) -> None:
        """Partitions were lost (already reassigned): drop their state, commit nothing."""


def is_cooperative(config: Mapping[str, str]) -> bool:
    """True when the configured assignment protocol is incremental (cooperative)."""
    strategy = config.get("partition.assignment.strategy", "")
    return "cooperative" in strategy or config.get("group.protocol", "classic") == "consumer"


class ConsumerThread:
    """One thread owning a subscribed confluent-kafka ``Consumer``.

    Args:
        config: librdkafka settings (see :func:`connector.kafka.client_config.consumer_config`);
            ``enable.auto.commit`` is forced off.
        topics: topics to subscribe to.
        listener: rebalance hooks run on the loop; ``None`` keeps no state (tests, tools).
        batch_size: ``num_messages`` of one ``consume()`` call.
        poll_timeout_s: how long one ``consume()`` call may block; also the latency of
            commands.
        max_pending_batches: message lists the loop may lag behind before the thread holds.
        flow_hold_s: how long the thread holds before it pauses the partitions instead.
        revoke_timeout_s: how long a revoke waits for the loop before completing anyway
            (uncommitted: the records are read again by the next owner).
        stats_cb: called with librdkafka's statistics JSON, on the consumer thread.
        statistics_interval_ms: how often ``stats_cb`` is called (0: never).
    """

    def __init__(
        self,
        config: Mapping[str, str],
        topics: Sequence[str],
        listener: RebalanceListener | None = None,
        *,
        batch_size: int = 1000,
        poll_timeout_s: float = 0.2,
        max_pending_batches: int = 8,
        flow_hold_s: float = 5.0,
        revoke_timeout_s: float = 10.0,
        stats_cb: Callable[[str], None] | None = None,
        statistics_interval_ms: int = 0,
    ) -> None:
        self._config: dict[str, Any] = dict(config)
        self._config["enable.auto.commit"] = "false"
        if stats_cb is not None and statistics_interval_ms > 0:
            self._config["stats_cb"] = stats_cb
            self._config["statistics.interval.ms"] = str(statistics_interval_ms)
        self._config["error_cb"] = self._on_client_error
        self._config["logger"] = LIBRDKAFKA_LOGGER
        self._cooperative = is_cooperative(self._config)
        self._topics = list(topics)
        self._listener = listener
        self._batch_size = batch_size
        self._poll_timeout_s = poll_timeout_s
        self._pausing = PausingManager(max_pending_batches, flow_hold_s)
        self._taken = threading.Event()  # set by the loop whenever it takes a list
        self._revoke_timeout_s = revoke_timeout_s

        self._loop: asyncio.AbstractEventLoop | None = None
        self._queue: asyncio.Queue[list[Message] | None] = asyncio.Queue()
        self._commands: queue.SimpleQueue[tuple[Command, asyncio.Future[Any]]] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._closing = threading.Event()
        self._started: asyncio.Future[None] | None = None
        self._closed: asyncio.Future[None] | None = None
        self._failure: KafkaError | None = None

        # Pending lists in the hand-off queue; written by both sides.
        self._pending_lock = threading.Lock()
        self._pending = 0
        # Thread-only state (read by the loop only as immutable snapshots).
        self._assignment: frozenset[TP] = frozenset()
        self._last_poll = 0.0

    # ------------------------------------------------------------------ loop side

    @property
    def last_poll(self) -> float:
        """``time.monotonic()`` of the last completed poll (0.0 before the first)."""
        return self._last_poll

    @property
    def assignment(self) -> frozenset[TP]:
        """The partitions currently assigned to this member (a snapshot)."""
        return self._assignment

    @property
    def paused(self) -> bool:
        """True while the loop asked for every partition to be paused."""
        return self._pausing.paused_all

    @property
    def failure(self) -> KafkaError | None:
        """The fatal error that stopped the thread, if any."""
        return self._failure

    async def start(self) -> None:
        """Start the thread, create the consumer on it and subscribe.

        Raises:
            ConsumeError: the consumer could not be created or subscribed (bad config).
        """
        if self._thread is not None:
            return
        self._loop = asyncio.get_running_loop()
        self._started = self._loop.create_future()
        self._closed = self._loop.create_future()
        self._thread = threading.Thread(target=self._run, name="kafka-consumer", daemon=True)
        self._thread.start()
        await self._started

    async def get_batch(self, timeout: float | None = None) -> list[Message]:
        """The next list of messages from the consumer thread.

        Returns:
            A non-empty list in partition order, or ``[]`` when ``timeout`` expired first.

        Raises:
            ConsumeError: the consumer failed fatally or was closed.
        """
        if self._failure is not None:
            raise self._failure
        try:
            async with asyncio.timeout(timeout):
                batch = await self._queue.get()
        except TimeoutError:
            return []
        if batch is None:
            self._queue.put_nowait(None)  # keep the end marker for any other reader
            if self._failure is not None:
                raise self._failure
            raise ConsumeError("consumer is closed", retriable=False)
        with self._pending_lock:
            self._pending -= 1
        self._taken.set()
        return batch

    def pause(self, tps: Iterable[TP] | None = None) -> asyncio.Future[None]:
        """Pause ``tps``, or with ``None`` every partition, including ones assigned later.

        Returns:
            A future resolved once the consumer thread applied it.
        """
        chosen = None if tps is None else set(tps)

        def run(consumer: Consumer) -> None:
            self._pausing.pause(chosen)
            self._apply_pauses(consumer)

        return self._submit(run)

    def resume(self, tps: Iterable[TP] | None = None) -> asyncio.Future[None]:
        """Undo :meth:`pause`: ``None`` lifts the pause of everything.

        Returns:
            A future resolved once the consumer thread applied it.
        """
        chosen = None if tps is None else set(tps)

        def run(consumer: Consumer) -> None:
            self._pausing.resume(chosen)
            self._apply_pauses(consumer)

        return self._submit(run)

    def commit(self, offsets: Mapping[TP, int]) -> asyncio.Future[dict[TP, int]]:
        """Commit ``offsets`` (next offset to read, per partition) synchronously on the thread.

        Partitions no longer assigned are skipped: their new owner's progress wins.

        Returns:
            A future of the offsets actually committed.

        Raises:
            CommitError: through the future, when the broker refused the commit.
        """
        wanted = dict(offsets)

        def run(consumer: Consumer) -> dict[TP, int]:
            return self._commit_now(consumer, wanted)

        return self._submit(run)

    async def close(self, timeout: float = 30.0) -> None:
        """Stop polling, run the queued commands, close the consumer (leaving the group).

        Closing revokes every partition through the listener (which may commit). The loop
        must keep running meanwhile: the revoke is served on it.

        Raises:
            ConsumeError: the thread did not finish within ``timeout`` seconds.
        """
        if self._thread is None or self._closed is None:
            return
        self._closing.set()
        try:
            async with asyncio.timeout(timeout):
                await asyncio.shield(self._closed)
        except TimeoutError:
            raise ConsumeError(f"consumer thread still running after {timeout}s", retriable=False) from None

    def _submit(self, command: Command) -> asyncio.Future[Any]:
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[Any] = loop.create_future()
        if self._thread is None or self._closed is None or self._closed.done():
            fut.set_exception(self._failure or ConsumeError("consumer is not running", retriable=False))
            return fut
        self._commands.put((command, fut))
        return fut

    def _deliver(self, batch: list[Message]) -> None:
        self._queue.put_nowait(batch)

    def _drop_queued(self, tps: Iterable[TP]) -> int:
        """Remove the records of ``tps`` still waiting in the hand-off queue (loop side)."""
        drop = set(tps)
        kept: list[list[Message] | None] = []
        dropped = 0
        while not self._queue.empty():
            batch = self._queue.get_nowait()
            if batch is None:
                kept.append(None)
                continue
            remaining = [m for m in batch if (m.topic(), m.partition()) not in drop]
            dropped += len(batch) - len(remaining)
            if remaining:
                kept.append(remaining)
            else:
                with self._pending_lock:
                    self._pending -= 1
        for item in kept:
            self._queue.put_nowait(item)
        return dropped

    async def _revoke_on_loop(self, tps: list[TP]) -> dict[TP, int]:
        self._drop_queued(tps)
        if self._listener is None:
            return {}
        return dict(await self._listener.on_revoked(tps))

    async def _lost_on_loop(self, tps: list[TP]) -> None:
        self._drop_queued(tps)
        if self._listener is not None:
            self._listener.on_lost(tps)

    def _assigned_on_loop(self, tps: list[TP]) -> None:
        if self._listener is not None:
            self._listener.on_assigned(tps)

    # ---------------------------------------------------------------- thread side

    def _call_loop(self, callback: Callable[..., Any], *args: Any) -> None:
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        try:
            loop.call_soon_threadsafe(callback, *args)
        except RuntimeError:  # loop closed concurrently
            pass

    def _wait_on_loop(self, coro: Coroutine[Any, Any, Any], what: str) -> Any:
        """Run ``coro`` on the loop and block this thread for its result (with a timeout)."""
        loop = self._loop
        if loop is None or loop.is_closed():
            coro.close()
            return None
        fut = asyncio.run_coroutine_threadsafe(coro, loop)
        try:
            return fut.result(timeout=self._revoke_timeout_s)
        except concurrent.futures.TimeoutError:
            fut.cancel()
            log.error("%s: the event loop did not answer within %.1fs", what, self._revoke_timeout_s)
        except Exception:
            log.exception("%s failed on the event loop", what)
        return None

    @staticmethod
    def _resolve(fut: asyncio.Future[Any], result: Any, exc: BaseException | None) -> None:
        if fut.done():
            return
        if exc is not None:
            fut.set_exception(exc)
        else:
            fut.set_result(result)

    def _signal(self, fut: asyncio.Future[Any] | None, exc: BaseException | None = None) -> None:
        if fut is not None:
            self._call_loop(self._resolve, fut, None, exc)

    def _on_client_error(self, err: Any) -> None:
        if err.fatal():
            self._failure = from_kafka_error(ConsumeError, err, "fatal consumer error")
            log.error("%s", self._failure)
            self._closing.set()
        else:
            level = logging.DEBUG if err.name() == "_TRANSPORT" else logging.WARNING
            log.log(level, "consumer client error: %s", err.str())

    def _run(self) -> None:
        try:
            consumer = Consumer(self._config)
            consumer.subscribe(
                self._topics, on_assign=self._on_assign, on_revoke=self._on_revoke, on_lost=self._on_lost
            )
        except (KafkaException, ValueError, TypeError) as exc:
            self._signal(self._started, ConsumeError(f"cannot create the consumer: {exc}", retriable=False))
            self._signal(self._closed)
            return
        self._signal(self._started)
        try:
            while not self._closing.is_set():
                self._run_commands(consumer)
                if self._hold():
                    continue
                self._flow_control(consumer)
                messages = consumer.consume(num_messages=self._batch_size, timeout=self._poll_timeout_s)
                self._last_poll = time.monotonic()
                if messages:
                    self._hand_over(messages)
            self._run_commands(consumer)
        except KafkaException as exc:
            err = exc.args[0] if exc.args else None
            if err is not None and hasattr(err, "fatal"):
                self._failure = from_kafka_error(ConsumeError, err, "consumer failed")
            else:
                self._failure = ConsumeError(f"consumer failed: {exc}", retriable=False)
            log.error("%s", self._failure)
        except Exception as exc:
            self._failure = ConsumeError(f"consumer thread crashed: {exc!r}", retriable=False)
            log.exception("consumer thread crashed")
        finally:
            self._shutdown(consumer)

    def _shutdown(self, consumer: Consumer) -> None:
        try:
            consumer.close()  # leaves the group; revokes everything through _on_revoke
        except Exception:
            log.exception("closing the consumer failed")
        closed = self._failure or ConsumeError("consumer is closed", retriable=False)
        while True:
            try:
                _, fut = self._commands.get_nowait()
            except queue.Empty:
                break
            self._call_loop(self._resolve, fut, None, closed)
        self._call_loop(self._deliver_end)
        self._signal(self._closed)

    def _deliver_end(self) -> None:
        self._queue.put_nowait(None)

    def _run_commands(self, consumer: Consumer) -> None:
        while True:
            try:
                command, fut = self._commands.get_nowait()
            except queue.Empty:
                return
            try:
                result = command(consumer)
            except KafkaError as exc:
                self._call_loop(self._resolve, fut, None, exc)
            except KafkaException as exc:
                err = exc.args[0] if exc.args else None
                wrapped: KafkaError = (
                    from_kafka_error(ConsumeError, err, "consumer request failed")
                    if err is not None and hasattr(err, "fatal")
                    else ConsumeError(f"consumer request failed: {exc}", retriable=True)
                )
                self._call_loop(self._resolve, fut, None, wrapped)
            except Exception as exc:
                self._call_loop(self._resolve, fut, None, exc)
            else:
                self._call_loop(self._resolve, fut, result, None)

    def _hand_over(self, messages: list[Message]) -> None:
        good: list[Message] = []
        for msg in messages:
            err = msg.error()
            if err is None:
                good.append(msg)
            elif err.code() == _PARTITION_EOF:
                continue
            elif err.fatal():
                raise KafkaException(err)
            else:
                log.warning("consumer error on %s[%s]: %s", msg.topic(), msg.partition(), err.str())
        if good:
            with self._pending_lock:
                self._pending += 1
            self._call_loop(self._deliver, good)

    def _hold(self) -> bool:
        """Wait (without consuming) while the loop is behind, as the pausing manager says;
        True while holding."""
        with self._pending_lock:
            pending = self._pending
        if not self._pausing.hold(pending, time.monotonic()):
            return False
        self._taken.clear()
        self._taken.wait(self._poll_timeout_s)
        self._last_poll = time.monotonic()  # alive: holding is this thread's work
        return True

    def _flow_control(self, consumer: Consumer) -> None:
        with self._pending_lock:
            pending = self._pending
        self._pausing.flow(pending)
        self._apply_pauses(consumer)

    def _apply_pauses(self, consumer: Consumer) -> None:
        to_pause, to_resume = self._pausing.changes()
        if to_pause:
            consumer.pause([TopicPartition(t, p) for t, p in to_pause])
        if to_resume:
            consumer.resume([TopicPartition(t, p) for t, p in to_resume])

    def _commit_now(self, consumer: Consumer, offsets: Mapping[TP, int]) -> dict[TP, int]:
        owned = {tp: off for tp, off in offsets.items() if tp in self._assignment}
        if not owned:
            return {}
        try:
            result = consumer.commit(
                offsets=[TopicPartition(t, p, off) for (t, p), off in sorted(owned.items())],
                asynchronous=False,
            )
        except KafkaException as exc:
            err = exc.args[0] if exc.args else None
            if err is not None and hasattr(err, "fatal"):
                if err.code() == _NO_OFFSET:
                    return {}
                raise from_kafka_error(CommitError, err, "commit failed") from None
            raise CommitError(f"commit failed: {exc}", retriable=True) from None
        for tp in result or []:
            if tp.error is not None:
                raise from_kafka_error(CommitError, tp.error, f"commit of {tp.topic}[{tp.partition}] failed")
        return owned

    # Rebalance callbacks: run on this thread, inside consume() or close().

    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        tps = [(p.topic, p.partition) for p in partitions]
        if self._cooperative:
            if not partitions:  # a cooperative round that added nothing here
                return
            consumer.incremental_assign(partitions)
        else:
            consumer.assign(partitions)
        self._assignment = (self._assignment | frozenset(tps)) if self._cooperative else frozenset(tps)
        self._pausing.assign(self._assignment)
        log.info("assigned %d partition(s): %s", len(tps), _fmt(tps))
        self._apply_pauses(consumer)
        # Queued before any record of these partitions, so the loop learns of them first.
        self._call_loop(self._assigned_on_loop, tps)

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        tps = [(p.topic, p.partition) for p in partitions]
        if self._cooperative and not partitions:
            return
        log.info("revoking %d partition(s): %s", len(tps), _fmt(tps))
        offsets = self._wait_on_loop(self._revoke_on_loop(tps), "revoke") or {}
        revoked = set(tps)
        to_commit = {tp: off for tp, off in offsets.items() if tp in revoked}
        if to_commit:
            try:
                self._commit_now(consumer, to_commit)
            except KafkaError as exc:
                log.warning("commit on revoke failed (records will be read again): %s", exc)
        self._unassign(consumer, partitions, revoked)

    def _on_lost(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        tps = [(p.topic, p.partition) for p in partitions]
        log.warning("lost %d partition(s): %s", len(tps), _fmt(tps))
        self._wait_on_loop(self._lost_on_loop(tps), "lost")
        self._unassign(consumer, partitions, set(tps))

    def _unassign(self, consumer: Consumer, partitions: list[TopicPartition], tps: set[TP]) -> None:
        try:
            if self._cooperative:
                consumer.incremental_unassign(partitions)
            else:
                consumer.unassign()
        except KafkaException as exc:
            log.warning("unassign failed: %s", exc)
        self._assignment = self._assignment - tps if self._cooperative else frozenset()
        self._pausing.assign(self._assignment)


def _fmt(tps: Iterable[TP]) -> str:
    return ", ".join(f"{t}[{p}]" for t, p in sorted(tps))
