"""The group consumer of the CRM topic, owned by one dedicated thread.

librdkafka's consumer is not meant to be driven from several threads, and its rebalance
callbacks run inside ``consume()``. So one thread owns the ``Consumer`` and does *every*
call on it:

* it calls ``consume(num_messages=..., timeout=...)`` in a loop and hands each non-empty
  list of messages to the asyncio loop with ``loop.call_soon_threadsafe`` (into an
  :class:`asyncio.Queue` read by :meth:`ConsumerThread.get_batch`);
* between two polls it drains a thread-safe command queue: the loop's ``pause``,
  ``resume`` and ``commit`` requests run there, and each answers through an asyncio future;
* the rebalance callbacks run there too (:class:`connector.kafka.rebalance.Rebalancer`:
  incremental with ``cooperative-sticky``; a revoke commits what the loop settled for the
  revoked partitions before it completes, a lost partition is never committed).

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
import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from confluent_kafka import Consumer, KafkaException, Message, TopicPartition
from confluent_kafka import KafkaError as RdKafkaError

from connector.core.models import TP
from connector.core.pausing import PausingManager
from connector.kafka.client_config import LIBRDKAFKA_LOGGER
from connector.kafka.commands import CommandQueue, resolve
from connector.kafka.exceptions import CommitError, ConsumeError, KafkaError, from_kafka_error
from connector.kafka.handoff import HandOff
from connector.kafka.loop_thread import call_loop
from connector.kafka.rebalance import RebalanceListener, Rebalancer, is_cooperative

log = logging.getLogger(__name__)

Command = Callable[[Consumer], Any]

# librdkafka's local error codes carry a leading underscore; read them once, by name.
_PARTITION_EOF: int = getattr(RdKafkaError, "_PARTITION_EOF")  # noqa: B009
_NO_OFFSET: int = getattr(RdKafkaError, "_NO_OFFSET")  # noqa: B009


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
        self._topics = list(topics)
        self._batch_size = batch_size
        self._poll_timeout_s = poll_timeout_s
        self._pausing = PausingManager(max_pending_batches, flow_hold_s)
        self._queue = HandOff()
        self._rebalancer = Rebalancer(
            cooperative=is_cooperative(self._config), handoff=self._queue, pausing=self._pausing,
            listener=listener, commit=self._commit_now, apply_pauses=self._apply_pauses,
            revoke_timeout_s=revoke_timeout_s)

        self._loop: asyncio.AbstractEventLoop | None = None
        self._commands: CommandQueue[Consumer] = CommandQueue()
        self._thread: threading.Thread | None = None
        self._closing = threading.Event()
        self._started: asyncio.Future[None] | None = None
        self._closed: asyncio.Future[None] | None = None
        self._failure: KafkaError | None = None
        # Thread-only state (read by the loop only as immutable snapshots).
        self._last_poll = 0.0

    # ------------------------------------------------------------------ loop side

    @property
    def last_poll(self) -> float:
        """``time.monotonic()`` of the last completed poll (0.0 before the first)."""
        return self._last_poll

    @property
    def assignment(self) -> frozenset[TP]:
        """The partitions currently assigned to this member (a snapshot)."""
        return self._rebalancer.assignment

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
        self._rebalancer.loop = self._loop
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
        batch = await self._queue.get(timeout)
        if batch is None:
            raise self._failure or ConsumeError("consumer is closed", retriable=False)
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
        running = self._thread is not None and self._closed is not None and not self._closed.done()
        refused = None if running else (self._failure or ConsumeError("consumer is not running", retriable=False))
        return self._commands.submit(command, refused)

    # ---------------------------------------------------------------- thread side

    def _call_loop(self, callback: Callable[..., Any], *args: Any) -> None:
        call_loop(self._loop, callback, *args)

    def _signal(self, fut: asyncio.Future[Any] | None, exc: BaseException | None = None) -> None:
        if fut is not None:
            self._call_loop(resolve, fut, None, exc)

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
                self._topics, on_assign=self._rebalancer.on_assign, on_revoke=self._rebalancer.on_revoke,
                on_lost=self._rebalancer.on_lost,
            )
        except (KafkaException, ValueError, TypeError) as exc:
            self._signal(self._started, ConsumeError(f"cannot create the consumer: {exc}", retriable=False))
            self._signal(self._closed)
            return
        self._signal(self._started)
        try:
            while not self._closing.is_set():
                self._commands.run_all(consumer)
                if self._hold():
                    continue
                self._flow_control(consumer)
                messages = consumer.consume(num_messages=self._batch_size, timeout=self._poll_timeout_s)
                self._last_poll = time.monotonic()
                if messages:
                    self._hand_over(messages)
            self._commands.run_all(consumer)
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
            consumer.close()  # leaves the group; revokes everything through the rebalancer
        except Exception:
            log.exception("closing the consumer failed")
        closed = self._failure or ConsumeError("consumer is closed", retriable=False)
        self._commands.fail_all(closed)
        self._call_loop(self._queue.end)
        self._signal(self._closed)

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
            self._queue.counted()
            self._call_loop(self._queue.deliver, good)

    def _hold(self) -> bool:
        """Wait (without consuming) while the loop is behind, as the pausing manager says;
        True while holding."""
        if not self._pausing.hold(self._queue.pending, time.monotonic()):
            return False
        self._queue.wait_taken(self._poll_timeout_s)
        self._last_poll = time.monotonic()  # alive: holding is this thread's work
        return True

    def _flow_control(self, consumer: Consumer) -> None:
        self._pausing.flow(self._queue.pending)
        self._apply_pauses(consumer)

    def _apply_pauses(self, consumer: Consumer) -> None:
        to_pause, to_resume = self._pausing.changes()
        if to_pause:
            consumer.pause([TopicPartition(t, p) for t, p in to_pause])
        if to_resume:
            consumer.resume([TopicPartition(t, p) for t, p in to_resume])

    def _commit_now(self, consumer: Consumer, offsets: Mapping[TP, int]) -> dict[TP, int]:
        return commit_owned(consumer, self._rebalancer.assignment, offsets)


def commit_owned(consumer: Consumer, assignment: frozenset[TP], offsets: Mapping[TP, int]) -> dict[TP, int]:
    """Commit synchronously the ``offsets`` of partitions in ``assignment``; skip the others.

    Returns:
        The offsets committed (nothing committed yet on a partition is not an error).

    Raises:
        CommitError: the broker refused the commit (``retriable`` says whether to try again).
    """
    owned = {tp: off for tp, off in offsets.items() if tp in assignment}
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
