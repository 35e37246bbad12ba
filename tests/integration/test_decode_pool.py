"""connector.pipeline.decode_lanes with real worker processes (spawned), no broker."""

from __future__ import annotations

import asyncio
import os
import signal

import pytest

from connector.cli.sample_data import SampleSpec, generate
from connector.pipeline.decode_lanes import DecodePool, DecodeWorkerError, auto_workers
from connector.pipeline.decoding import OK, Decoder, DecodeSpec
from connector.serde.codec import AvroCodec

CODEC = AvroCodec("ContactOptInChanged")
SPEC = DecodeSpec(wire_format="avro", cache_size=1000)


def sample(count: int) -> list[tuple[bytes | None, bytes | None]]:
    data = generate(SampleSpec(count=count, contacts=max(1, count // 2), national_share=0.3, messy_share=0.2,
                               invalid_share=0.05, dnc_share=0.0, opt_out_share=0.1, extra_dnc=0, seed=7))
    return [(r.key.encode(), CODEC.encode(r.value)) for r in data.events if r.value is not None]


async def test_workers_give_what_the_loop_gives() -> None:
    pairs = sample(600)
    pool = DecodePool(SPEC, workers=2)
    await pool.start()
    assert pool.lanes == 2
    futures = [pool.submit(lane, pairs[i::3]) for i, lane in enumerate((0, 1, 0))]
    results = await asyncio.gather(*futures)
    local = Decoder(SPEC)
    assert results == [local.decode_many(pairs[i::3]) for i in range(3)]
    assert sum(1 for chunk in results for out in chunk if out[0] == OK) > 500
    pids = await pool.worker_pids()
    assert len(set(pids)) == 2 and os.getpid() not in pids


async def test_no_workers_decodes_on_the_loop() -> None:
    pool = DecodePool(SPEC, workers=0)
    await pool.start()
    assert pool.lanes == 1 and await pool.worker_pids() == []
    fut = pool.submit(5, sample(20))
    assert fut.done()  # nothing to wait for
    assert len(fut.result()) == len(sample(20))


def test_worker_count_is_checked() -> None:
    assert auto_workers() == max(0, min(len(os.sched_getaffinity(0)) - 1, 4))
    assert DecodePool(SPEC).workers == auto_workers()
    with pytest.raises(ValueError, match="workers"):
        DecodePool(SPEC, workers=-1)


async def test_a_dead_worker_fails_its_chunk_and_is_replaced() -> None:
    pool = DecodePool(SPEC, workers=1)
    await pool.start()
    [pid] = await pool.worker_pids()
    busy = pool.submit(0, sample(4000) * 25)  # a few seconds of work
    await asyncio.sleep(0.3)
    os.kill(pid, signal.SIGKILL)
    with pytest.raises(DecodeWorkerError, match="lane 0 died"):
        await asyncio.wait_for(busy, 30)
    # the next chunk gets a fresh worker
    again = await asyncio.wait_for(pool.submit(0, sample(50)), 60)
    assert len(again) == len(sample(50))
    [new_pid] = await pool.worker_pids()
    assert new_pid != pid


_CHILD = """
import asyncio, sys
from connector.pipeline.decode_lanes import DecodePool
from connector.pipeline.decoding import DecodeSpec

async def main():
    pool = DecodePool(DecodeSpec(), workers=1)
    await pool.start()
    print(*(await pool.worker_pids()), flush=True)
    await asyncio.sleep(60)

if __name__ == "__main__":
    asyncio.run(main())
"""


def test_workers_end_when_their_parent_is_killed(tmp_path) -> None:
    import subprocess
    import sys
    import time

    script = tmp_path / "child.py"
    script.write_text(_CHILD)
    child = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None
        worker = int(child.stdout.readline())
        os.kill(worker, 0)  # alive
        child.kill()
        child.wait(10)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                os.kill(worker, 0)
            except ProcessLookupError:
                break
            time.sleep(0.1)
        else:
            os.kill(worker, signal.SIGKILL)
            pytest.fail("the worker outlived its killed parent")
    finally:
        child.kill()


async def test_a_decoder_that_cannot_be_built_fails_the_chunk_not_the_worker() -> None:
    pool = DecodePool(DecodeSpec(wire_format="avro", default_region="XX"), workers=1)
    with pytest.raises(DecodeWorkerError, match="lane 0 failed: ValueError: unknown default region"):
        await asyncio.wait_for(pool.start(), 60)
    # the lane is still there for a good spec
    good = DecodePool(SPEC, workers=1)
    assert len(await asyncio.wait_for(good.submit(0, sample(10)), 60)) == len(sample(10))
    assert await good.worker_pids() == await pool.worker_pids()


def test_frames_are_marshal_for_built_ins_and_pickle_otherwise() -> None:
    from decimal import Decimal

    from connector.pipeline.decode_lanes import dumps_frame, loads_frame

    plain = (7, True, [("OK", "e", "c", "+14155550123", True, None, "x", None, {"k": "v"}, 3, "", 120)])
    assert dumps_frame(plain)[:1] == b"M" and loads_frame(dumps_frame(plain)) == plain
    odd = (8, True, [Decimal("1.5")])
    assert dumps_frame(odd)[:1] == b"P" and loads_frame(dumps_frame(odd)) == odd


def test_lane_pipes_get_a_buffer_a_whole_result_fits_in() -> None:
    import multiprocessing

    from connector.pipeline.decode_lanes import widen_pipe

    read, write = multiprocessing.Pipe(duplex=False)
    try:
        size = widen_pipe(write)
        if size == 0:
            pytest.skip("the system cannot size pipes")
        with open("/proc/sys/fs/pipe-max-size") as f:
            allowed = int(f.read())
        assert size >= min(1 << 20, allowed)  # the default is 64 KiB
    finally:
        read.close()
        write.close()
