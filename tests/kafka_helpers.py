"""Broker helpers shared by the integration and end-to-end tests."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Sequence

from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition

#: Group-coordinator errors of a broker that is still settling (a fresh one loads
#: ``__consumer_offsets`` first): asked again rather than failed.
_SETTLING = {KafkaError.NOT_COORDINATOR, KafkaError.COORDINATOR_LOAD_IN_PROGRESS,
             KafkaError.COORDINATOR_NOT_AVAILABLE}


def committed_offsets(bootstrap: str, group: str, tps: Sequence[tuple[str, int]],
                      timeout: float = 20.0) -> dict[tuple[str, int], int]:
    """The group's committed offsets of ``tps`` (-1001 where none).

    Raises:
        KafkaException: a non-retriable error, or the coordinator did not settle in ``timeout``.
    """
    deadline = time.monotonic() + timeout
    while True:
        consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False})
        try:
            result = consumer.committed([TopicPartition(t, p) for t, p in tps], timeout=10)
            return {(tp.topic, tp.partition): tp.offset for tp in result}
        except KafkaException as exc:
            err = exc.args[0] if exc.args else None
            settling = err is not None and (err.code() in _SETTLING or err.retriable())
            if not settling or time.monotonic() >= deadline:
                raise
        finally:
            consumer.close()
        time.sleep(0.2)


def free_port() -> int:
    """A TCP port on 127.0.0.1 nothing listens on (at the time of the call)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class TcpProxy:
    """A TCP forwarder on 127.0.0.1 that can be started late and cut, to make a broker (or any
    server) unreachable and reachable again at a real socket.

    Args:
        port: where to listen once started.
        target: ``host:port`` to forward to.
    """

    def __init__(self, port: int, target: str) -> None:
        self.port = port
        host, _, target_port = target.rpartition(":")
        self._target = (host, int(target_port))
        self._server: asyncio.Server | None = None
        self._pipes: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        """Listen and forward."""
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)

    async def stop(self) -> None:
        """Stop listening and cut every forwarded connection."""
        if self._server is not None:
            self._server.close()
            self._server = None
        for task in list(self._pipes):
            task.cancel()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(*self._target)
        except OSError:
            writer.close()
            return
        for src, dst in ((reader, up_writer), (up_reader, writer)):
            task = asyncio.create_task(self._pipe(src, dst))
            self._pipes.add(task)
            task.add_done_callback(self._pipes.discard)

    @staticmethod
    async def _pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
        try:
            while data := await src.read(65536):
                dst.write(data)
                await dst.drain()
        except (OSError, asyncio.CancelledError):
            pass
        finally:
            dst.close()
