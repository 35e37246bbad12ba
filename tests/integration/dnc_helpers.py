"""Helpers of the DNC integration tests (imported by name: pytest puts this folder on
``sys.path``): producing DNC records, waiting, a TCP proxy that plays a broker coming back."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterable
from typing import Any

from confluent_kafka import Consumer, Producer, TopicPartition

from connector.serde.codec import AvroCodec

COMPACT = {"cleanup.policy": "compact"}
CODEC = AvroCodec("DncEntry")


def entry(list_name: str, expires_at: int | None = None) -> bytes:
    return CODEC.encode({"list_name": list_name, "added_at": 1_700_000_000_000, "expires_at": expires_at})


def config(bootstrap: str) -> dict[str, str]:
    return {"bootstrap.servers": bootstrap, "group.id": f"t-{uuid.uuid4().hex}"}


def produce(bootstrap: str, topic: str, records: Iterable[tuple[bytes | None, bytes | None]],
            partitions: int = 1, partition: int | None = None) -> None:
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5})
    errors: list[Any] = []

    def on_delivery(err: Any, _msg: Any) -> None:
        if err is not None:
            errors.append(err)

    for i, (key, value) in enumerate(records):
        producer.produce(topic, key=key, value=value, on_delivery=on_delivery,
                         partition=i % partitions if partition is None else partition)
    assert producer.flush(10) == 0
    assert errors == []


def read_topic(bootstrap: str, topic: str, count: int, timeout: float = 10.0) -> list[Any]:
    consumer = Consumer(config(bootstrap))
    consumer.assign([TopicPartition(topic, 0, 0)])
    out: list[Any] = []
    deadline = time.monotonic() + timeout
    try:
        while len(out) < count and time.monotonic() < deadline:
            out += [m for m in consumer.consume(100, 0.2) if m.error() is None]
    finally:
        consumer.close()
    return out


async def wait_for(predicate: Callable[[], bool], timeout: float = 30.0) -> None:
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.02)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextlib.asynccontextmanager
async def proxy(port: int, upstream: str) -> AsyncIterator[None]:
    """Forward 127.0.0.1:``port`` to ``upstream`` while the context is open: the broker's
    bootstrap address "comes back" when it opens."""
    host, _, upstream_port = upstream.rpartition(":")

    async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            writer.close()

    async def handle(client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        server_r, server_w = await asyncio.open_connection(host, int(upstream_port))
        await asyncio.gather(pipe(client_r, server_w), pipe(server_r, client_w))

    server = await asyncio.start_server(handle, "127.0.0.1", port)
    try:
        yield
    finally:
        server.close()
