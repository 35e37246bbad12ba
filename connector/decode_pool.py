"""Runs :mod:`connector.decoding` in worker processes, spread by record key, for the asyncio loop.

Why processes: decoding Avro and parsing phone numbers is CPU work in Python, and the GIL
lets only one thread do it at a time; it is most of what a record costs (docs/benchmarks.md).
Each *lane* is one worker process (a one-process ``ProcessPoolExecutor``, started with
``spawn``: the parent runs librdkafka threads, which ``fork`` would copy half-alive). A
caller picks a record's lane from its key (the ingest pipeline: ``hash(key) % lanes``), so
every record of a contact meets the same worker and the same phone cache: each number is
parsed once, not once per worker, and the caches split the numbers between them.

The lanes are stateless apart from that cache, so they are shared by every pool of the
process (tests build many pipelines; each spawn costs a second) and live until the process
exits. A lane whose process died is replaced on the next submit; the chunk that was in it
fails with :class:`DecodeWorkerError`, which stops the pipeline (its records were never
settled, so a restart reads them again).

With ``workers=0`` there are no processes: :meth:`DecodePool.submit` decodes on the loop
and returns a finished future (small deployments, and tests that want no processes).
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import os
import signal
import threading
import time
from collections.abc import Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool

from connector.decoding import Decoded, Decoder, DecodeSpec, decode_chunk
from connector.errors import ConnectorError
from connector.runtime import tune_gc

log = logging.getLogger(__name__)

#: Most worker processes an unset ``workers`` starts.
MAX_AUTO_WORKERS = 4
#: How often a worker checks that its parent is still alive.
_PARENT_CHECK_S = 0.5


class DecodeWorkerError(ConnectorError):
    """A decode worker process died or could not start (fatal for the pipeline)."""


def auto_workers() -> int:
    """One worker per CPU this process may run on but one, which the event loop's own process
    needs (it is busy too: windowing, the Kafka clients), at most :data:`MAX_AUTO_WORKERS`;
    so none on a single CPU. On the 2-core bench machine one worker beat two (26,651 against
    21,031 events/s, docs/benchmarks.md): three busy processes on two cores wait on each other."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cpus = os.cpu_count() or 1
    return max(0, min(cpus - 1, MAX_AUTO_WORKERS))


def _init_worker() -> None:
    """Worker initializer: Ctrl-C reaches the whole process group, but the parent decides when
    to stop; a parent that died (SIGKILL) takes its workers along; the collector is tuned as
    in the parent (:func:`connector.runtime.tune_gc`)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    threading.Thread(target=_exit_with_parent, args=(os.getppid(),), name="parent-watch", daemon=True).start()
    tune_gc()


def _exit_with_parent(parent: int) -> None:
    """Worker side: end the process once the parent is gone (it is re-parented then). A
    worker waiting for its next chunk would otherwise wait forever."""
    while os.getppid() == parent:
        time.sleep(_PARENT_CHECK_S)
    os._exit(0)


_lanes: list[ProcessPoolExecutor] = []
_lanes_lock = threading.Lock()


def _lane(index: int, replace: ProcessPoolExecutor | None = None) -> ProcessPoolExecutor:
    """The process-wide executor of lane ``index``, started on first use (or replacing a
    broken one)."""
    with _lanes_lock:
        while len(_lanes) <= index:
            _lanes.append(_new_executor())
        if replace is not None and _lanes[index] is replace:
            replace.shutdown(wait=False, cancel_futures=True)
            _lanes[index] = _new_executor()
        return _lanes[index]


def _new_executor() -> ProcessPoolExecutor:
    return ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn"),
                               initializer=_init_worker)


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
        return [await asyncio.wrap_future(_lane(lane).submit(os.getpid)) for lane in range(self.workers)]

    def submit(self, lane: int, records: Sequence[tuple[bytes | None, bytes | None]]) -> asyncio.Future[list[Decoded]]:
        """Decode ``records`` on lane ``lane`` (records of one lane are decoded in submit order).

        Returns:
            A future of one :data:`connector.decoding.Decoded` tuple per record, in order. It
            fails with :class:`DecodeWorkerError` when the worker process died.
        """
        loop = asyncio.get_running_loop()
        if self._decoder is not None:
            done: asyncio.Future[list[Decoded]] = loop.create_future()
            done.set_result(self._decoder.decode_many(records))
            return done
        executor = _lane(lane % self.workers)
        try:
            inner: Future[list[Decoded]] = executor.submit(decode_chunk, self.spec, records)
        except (BrokenProcessPool, RuntimeError):
            executor = _lane(lane % self.workers, replace=executor)
            inner = executor.submit(decode_chunk, self.spec, records)
        outer = asyncio.wrap_future(inner, loop=loop)
        result: asyncio.Future[list[Decoded]] = loop.create_future()

        def done_cb(fut: asyncio.Future[list[Decoded]]) -> None:
            if result.done():
                return
            if fut.cancelled():
                result.cancel()
            elif isinstance(fut.exception(), BrokenProcessPool):
                log.error("decode worker of lane %d died", lane % self.workers)
                _lane(lane % self.workers, replace=executor)
                result.set_exception(DecodeWorkerError(f"decode worker of lane {lane % self.workers} died"))
            elif (exc := fut.exception()) is not None:
                result.set_exception(exc)
            else:
                result.set_result(fut.result())

        outer.add_done_callback(done_cb)
        return result
