"""A real Prometheus server (Debian package) scrapes a MetricsServer on 127.0.0.1 and answers
a rate() query through its HTTP API.

It loads the shipped alert rules too, so the rules are proven to load in a real server. The
scrape target and interval are the only changes made to deploy/prometheus/prometheus.yml.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import socket
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml
from deploy_helpers import PROMETHEUS_DIR, require_tool

from connector.config import ServerSettings
from connector.ops.health import Health
from connector.ops.metrics import Metrics
from connector.ops.server import MetricsServer


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def write_config(tmp: Path, target_port: int) -> Path:
    config = yaml.safe_load((PROMETHEUS_DIR / "prometheus.yml").read_text())
    config["global"]["scrape_interval"] = "1s"
    config["global"]["evaluation_interval"] = "1s"
    config["scrape_configs"] = [
        {"job_name": "cxone-connector", "static_configs": [{"targets": [f"127.0.0.1:{target_port}"]}]}
    ]
    shutil.copy(PROMETHEUS_DIR / "alerts.yml", tmp / "alerts.yml")
    path = tmp / "prometheus.yml"
    path.write_text(yaml.safe_dump(config))
    return path


@contextlib.asynccontextmanager
async def prometheus(tmp: Path, config: Path, port: int) -> AsyncIterator[str]:
    binary = require_tool("prometheus")
    log = (tmp / "prometheus.log").open("wb")
    proc = await asyncio.create_subprocess_exec(
        binary, f"--config.file={config}", f"--storage.tsdb.path={tmp / 'data'}",
        f"--web.listen-address=127.0.0.1:{port}", "--storage.tsdb.retention.time=1h",
        stdout=log, stderr=asyncio.subprocess.STDOUT,
    )
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        if proc.returncode is None:
            proc.terminate()
            try:
                await asyncio.wait_for(proc.wait(), 10)
            except TimeoutError:
                proc.kill()
                await proc.wait()
        log.close()


async def query(http: aiohttp.ClientSession, base: str, promql: str) -> list[dict[str, Any]]:
    async with http.get(f"{base}/api/v1/query", params={"query": promql}) as resp:
        body = await resp.json()
    assert body["status"] == "success", body
    result: list[dict[str, Any]] = body["data"]["result"]
    return result


async def wait_ready(http: aiohttp.ClientSession, base: str, deadline: float, log: Path) -> None:
    while time.monotonic() < deadline:
        with contextlib.suppress(aiohttp.ClientError):
            async with http.get(f"{base}/-/ready") as resp:
                if resp.status == 200:
                    return
        await asyncio.sleep(0.2)
    pytest.fail(f"prometheus did not become ready:\n{log.read_text()[-2000:]}")


@pytest.mark.slow
async def test_prometheus_scrapes_the_metrics_server_and_computes_a_rate(tmp_path: Path) -> None:
    require_tool("prometheus")
    metrics = Metrics()
    server = MetricsServer(ServerSettings(host="127.0.0.1", port=0), metrics.registry, Health())
    await server.start()
    prom_port = free_port()
    config = write_config(tmp_path, server.port)
    deadline = time.monotonic() + 25

    async def feed() -> None:  # a steady 50 events/s while Prometheus scrapes every second
        while True:
            metrics.events_consumed.inc(5)
            await asyncio.sleep(0.1)

    feeder = asyncio.create_task(feed())
    try:
        async with (
            prometheus(tmp_path, config, prom_port) as base,
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as http,
        ):
            await wait_ready(http, base, deadline, tmp_path / "prometheus.log")
            rate: list[dict[str, Any]] = []
            while time.monotonic() < deadline:
                rate = await query(http, base, "rate(cxone_connector_events_consumed_total[5s])")
                if rate and float(rate[0]["value"][1]) > 0:
                    break
                await asyncio.sleep(0.5)
            assert rate, "no rate after 25 s"
            value = float(rate[0]["value"][1])
            assert 10 < value < 150  # about 50/s; loose because scrapes and the feeder jitter
            assert rate[0]["metric"]["job"] == "cxone-connector"
            up = await query(http, base, 'up{job="cxone-connector"}')
            assert up[0]["value"][1] == "1"
            async with http.get(f"{base}/api/v1/rules") as resp:
                groups = (await resp.json())["data"]["groups"]
            loaded = {r["name"] for g in groups for r in g["rules"]}
            assert "CXoneConnectorDncNotReady" in loaded
    finally:
        feeder.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await feeder
        await server.stop()
