"""Runs :mod:`connector.pipeline.decoding` in worker processes, spread by record key, for the asyncio loop.

Why processes: decoding Avro and parsing phone numbers is CPU work in Python, and the GIL
lets only one thread do it at a time; it is most of what a record costs (docs/benchmarks.md).
Each *lane* is one worker process, started with ``spawn`` (the parent runs librdkafka
threads, which ``fork`` would copy half-alive). A caller picks a record's lane from its key
(the ingest pipeline: ``hash(key) % lanes``), so every record of a contact meets the same
worker and the same phone cache: each number is parsed once, not once per worker, and the
caches split the numbers between them.

A lane is two one-way pipes and two threads of the parent, nothing else: the *writer* takes
chunks off a queue (so the event loop never blocks on a full pipe) and sends them; the
*reader* receives the results and resolves each chunk's future on the chunk's own event
loop (``call_soon_threadsafe``). Chunks and results cross the pipes as :mod:`marshal`
frames (pickle when a value is not a plain built-in): a result is tuples of strings and
ints, which marshal reads back about 1.5 times as fast as pickle, and that read happens in
the parent, the busier process. A ``concurrent.futures.ProcessPoolExecutor`` did this job
before with a manager thread, a feeder thread and two futures per chunk, at a higher cost
per record in the parent (docs/benchmarks.md).

The lanes are stateless apart from that cache, so they are shared by every pool of the
process (tests build many pipelines, on many event loops; each spawn costs a second) and
live until the process exits. A lane whose process died is replaced on the next submit; the
chunks that were in it fail with :class:`DecodeWorkerError`, which stops the pipeline (their
records were never settled, so a restart reads them again). A worker ends when its parent
does.

With ``workers=0`` there are no processes: :meth:`DecodePool.submit` decodes on the loop
and returns a finished future (small deployments, and tests that want no processes).

Embedding: ``spawn`` imports the parent's main module again in each worker, so a script
that starts a pipeline must keep its start-up under ``if __name__ == "__main__":``.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import itertools
import logging
import marshal
import multiprocessing
import os
import pickle  # noqa: S403 - frames come only from our own worker processes, over private pipes
import queue
import signal
import threading
import time
from collections.abc import Sequence
from multiprocessing.connection import Connection
from typing import Any

from connector.errors import ConnectorError
from connector.ops.runtime import tune_gc
from connector.pipeline.decoding import Decoded, Decoder, DecodeSpec, decode_chunk

log = logging.getLogger(__name__)

#: Most worker processes an unset ``workers`` starts.
MAX_AUTO_WORKERS = 4
#: How often a worker checks that its parent is still alive.
_PARENT_CHECK_S = 0.5
#: Pipe buffer asked for (Linux): a list's chunk or result (~150 KB per 1,000 records) fits
#: whole, so the worker never waits on the parent's reader thread, which needs the GIL
#: between reads and can wait a switch interval (5 ms) for it each time.
_PIPE_BYTES = 1 << 20
#: First byte of a frame: how the rest is serialised.
_MARSHAL, _PICKLE = b"M", b"P"


class DecodeWorkerError(ConnectorError):
    """A decode worker process died or could not start, or its decoder failed (fatal for the
    pipeline)."""


def auto_workers() -> int:
    """One worker per CPU this process may run on but one, which the event loop's own process
    needs (it is busy too: windowing, the Kafka clients), at most :data:`MAX_AUTO_WORKERS`;
    so none on a single CPU. On the 2-core bench machine one worker beat two with the old
    executor-based lanes (26,651 against 21,031 events/s), and the two are within the noise
    with the pipe lanes (40,500-42,500 against 45,007; docs/benchmarks.md): the parent's GIL
    is the bound there."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cpus = os.cpu_count() or 1
    return max(0, min(cpus - 1, MAX_AUTO_WORKERS))


def dumps_frame(obj: Any) -> bytes:
    """Serialise a chunk or a result: marshal, or pickle for what marshal does not know."""
    try:
        return _MARSHAL + marshal.dumps(obj)
    except ValueError:  # not a plain built-in (a decoder only returns those, but be safe)
        return _PICKLE + pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)


def loads_frame(frame: bytes) -> Any:
    """Read back what :func:`dumps_frame` wrote."""
    body = memoryview(frame)[1:]
    if frame[:1] == _MARSHAL:
        return marshal.loads(body)  # noqa: S302 - see the pickle import
    return pickle.loads(body)  # noqa: S301 - see the import


# ---------------------------------------------------------------------------- worker side


def _init_worker() -> None:
    """Worker set-up: Ctrl-C reaches the whole process group, but the parent decides when
    to stop; a parent that died (SIGKILL) takes its workers along; the collector is tuned as
    in the parent (:func:`connector.ops.runtime.tune_gc`)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    threading.Thread(target=_exit_with_parent, args=(os.getppid(),), name="parent-watch", daemon=True).start()
    tune_gc()


def _exit_with_parent(parent: int) -> None:
    """Worker side: end the process once the parent is gone (it is re-parented then). The
    request pipe reads end-of-file then too, unless another process inherited its write end."""
    while os.getppid() == parent:
        time.sleep(_PARENT_CHECK_S)
    os._exit(0)


def _worker_main(requests: Connection, results: Connection) -> None:
    """A worker process: decode each ``(id, spec fields, records)`` frame, in order, and send
    back ``(id, True, decoded)`` or ``(id, False, error message)``; end at end-of-file."""
    _init_worker()
    while True:
        try:
            frame = requests.recv_bytes()
        except (EOFError, OSError):
            return
        rid, fields, records = loads_frame(frame)
        try:
            reply: tuple[int, bool, Any] = (rid, True, decode_chunk(DecodeSpec(*fields), records))
        except Exception as exc:  # reported to the parent, which fails the pipeline with it
            reply = (rid, False, f"{type(exc).__name__}: {exc}")
        try:
            results.send_bytes(dumps_frame(reply))
        except OSError:  # the parent is gone
            return


# ---------------------------------------------------------------------------- parent side

_Pending = tuple[asyncio.AbstractEventLoop, "asyncio.Future[list[Decoded]]"]
_ids = itertools.count(1)


class _LaneDied(Exception):
    """Internal: the lane was known dead before a chunk could be queued."""


class _Lane:
    """One worker process, its two pipes, and the parent's writer and reader threads."""

    def __init__(self, index: int) -> None:
        self.index = index
        ctx = multiprocessing.get_context("spawn")
        req_read, self._requests = ctx.Pipe(duplex=False)
        self._results, res_write = ctx.Pipe(duplex=False)
        widen_pipe(self._requests)
        widen_pipe(self._results)
        self.process = ctx.Process(target=_worker_main, args=(req_read, res_write), daemon=True,
                                   name=f"decode-lane-{index}")
        self.process.start()
        # Only the worker holds these ends now: when it dies, the result pipe reads end-of-file.
        req_read.close()
        res_write.close()
        self._lock = threading.Lock()
        self._pending: dict[int, _Pending] = {}
        self.dead = False
        # chunks are serialised on the writer thread: the loop thread only queues them
        self._outbox: queue.SimpleQueue[tuple[int, tuple[Any, ...], Any] | None] = queue.SimpleQueue()
        threading.Thread(target=self._write_loop, name=f"decode-lane-{index}-writer", daemon=True).start()
        threading.Thread(target=self._read_loop, name=f"decode-lane-{index}-reader", daemon=True).start()

    @property
    def pid(self) -> int:
        """The worker's process id."""
        return self.process.pid or 0

    def submit(self, spec: DecodeSpec, records: Sequence[tuple[bytes | None, bytes | None]],
               loop: asyncio.AbstractEventLoop, fut: asyncio.Future[list[Decoded]]) -> None:
        """Queue a chunk for the worker; ``fut`` is resolved on ``loop``.

        Raises:
            _LaneDied: the lane is known dead (the caller replaces it).
        """
        rid = next(_ids)
        with self._lock:
            if self.dead:
                raise _LaneDied
            self._pending[rid] = (loop, fut)
        self._outbox.put((rid, dataclasses.astuple(spec), records))

    def _write_loop(self) -> None:
        while (chunk := self._outbox.get()) is not None:
            try:
                self._requests.send_bytes(dumps_frame(chunk))
            except OSError:  # the worker died: the reader reads end-of-file and fails the chunks
                return

    def _read_loop(self) -> None:
        while True:
            try:
                frame = self._results.recv_bytes()
            except (EOFError, OSError):
                break
            rid, ok, payload = loads_frame(frame)
            with self._lock:
                pending = self._pending.pop(rid, None)
            if pending is not None:
                _resolve_from_thread(pending, payload if ok else DecodeWorkerError(
                    f"decode worker of lane {self.index} failed: {payload}"))
        with self._lock:
            self.dead = True
            orphans, self._pending = list(self._pending.values()), {}
        self._outbox.put(None)
        if orphans:
            log.error("decode worker of lane %d died with %d chunk(s) in it", self.index, len(orphans))
        else:  # also how every worker ends when the process exits
            log.info("decode worker of lane %d ended", self.index)
        for pending in orphans:
            _resolve_from_thread(pending, DecodeWorkerError(f"decode worker of lane {self.index} died"))
        self.process.join(5)  # reap it
        self._requests.close()
        self._results.close()


def widen_pipe(conn: Connection, nbytes: int = _PIPE_BYTES) -> int:
    """Ask for a pipe buffer of ``nbytes``, or what the system allows below that.

    Returns:
        The pipe's buffer size afterwards, or 0 where the system cannot tell (no
        ``F_GETPIPE_SZ``: not Linux); the default size is kept when asking fails.
    """
    try:
        import fcntl
    except ImportError:  # not POSIX
        return 0
    setpipe, getpipe = getattr(fcntl, "F_SETPIPE_SZ", None), getattr(fcntl, "F_GETPIPE_SZ", None)
    if setpipe is None or getpipe is None:
        return 0
    try:
        with open("/proc/sys/fs/pipe-max-size") as f:
            limit = int(f.read())
    except (OSError, ValueError):
        limit = nbytes
    with contextlib.suppress(OSError):
        fcntl.fcntl(conn.fileno(), setpipe, min(nbytes, limit))
    return int(fcntl.fcntl(conn.fileno(), getpipe))


def _resolve_from_thread(pending: _Pending, outcome: list[Decoded] | BaseException) -> None:
    loop, fut = pending
    try:
        loop.call_soon_threadsafe(_resolve, fut, outcome)
    except RuntimeError:  # that loop is closed: nobody waits any more
        pass


def _resolve(fut: asyncio.Future[list[Decoded]], outcome: list[Decoded] | BaseException) -> None:
    if fut.done():  # cancelled meanwhile
        return
    if isinstance(outcome, BaseException):
        fut.set_exception(outcome)
    else:
        fut.set_result(outcome)


_lanes: list[_Lane] = []
_lanes_lock = threading.Lock()


def _lane(index: int) -> _Lane:
    """The process-wide lane ``index``, started on first use (or replacing a dead one)."""
    with _lanes_lock:
        while len(_lanes) <= index:
            _lanes.append(_Lane(len(_lanes)))
        if _lanes[index].dead:
            _lanes[index] = _Lane(index)
        return _lanes[index]


class DecodePool:
    """Decodes chunks of ``(key, value)`` pairs on ``workers`` lanes.

    Args:
        spec: what every decoder is built from.
        workers: worker processes; None is :func:`auto_workers`, ``0`` decodes on the loop.
        decoder: the in-loop decoder for ``workers=0`` (built from ``spec`` by default).

    Raises:
        ValueError: ``workers`` is negative.
    """

    def __init__(self, spec: DecodeSpec, workers: int | None = None, *, decoder: Decoder | None = None) -> None:
        if workers is not None and workers < 0:
            raise ValueError("workers must be None (automatic), 0 (on the loop) or a count")
        self.spec = spec
        self.workers = auto_workers() if workers is None else workers
        self._decoder = None if self.workers else (decoder or Decoder(spec))

    @property
    def lanes(self) -> int:
        """How many lanes records are spread over (1 when decoding on the loop)."""
        return max(1, self.workers)

    async def start(self) -> None:
        """Start the worker processes and build their decoders, so the first chunk does not
        pay for the spawn and the imports.

        Raises:
            DecodeWorkerError: a worker could not start.
        """
        if not self.workers:
            return
        await asyncio.gather(*(self.submit(lane, ()) for lane in range(self.workers)))
        log.info("decode workers ready: %d process(es), pids %s", self.workers, await self.worker_pids())

    async def worker_pids(self) -> list[int]:
        """The process id of each lane's worker (empty when decoding on the loop)."""
        return [_lane(lane).pid for lane in range(self.workers)]

    def submit(self, lane: int, records: Sequence[tuple[bytes | None, bytes | None]]) -> asyncio.Future[list[Decoded]]:
        """Decode ``records`` on lane ``lane`` (records of one lane are decoded in submit order).

        Returns:
            A future of one :data:`connector.pipeline.decoding.Decoded` tuple per record, in order. It
            fails with :class:`DecodeWorkerError` when the worker process died or its decoder
            failed.
        """
        loop = asyncio.get_running_loop()
        result: asyncio.Future[list[Decoded]] = loop.create_future()
        if self._decoder is not None:
            result.set_result(self._decoder.decode_many(records))
            return result
        index = lane % self.workers
        try:
            _lane(index).submit(self.spec, records, loop, result)
        except _LaneDied:
            _lane(index).submit(self.spec, records, loop, result)  # replaced by now
        return result
