"""``cxone-connector simulate``: run the CXone simulator (both profiles) until interrupted."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import logging
import signal
import sys

from connector.errors import ConfigError
from connector.simulator.config import SimulatorConfig
from connector.simulator.exceptions import SimulatorError
from connector.simulator.server import Simulator

#: Where the connector's default ``cxone.base_url`` looks for the simulator.
DEFAULT_PORT = 8700

EPILOG = """\
Both API profiles share one port:
  v2          POST /api/v2/oauth2/token, POST /api/v2/outbound/contactlistitems/bulkinsert,
              GET /api/v2/outbound/jobs/{jobId}, WebSocket /api/v2/events
  call-lists  GET /.well-known/openid-configuration, POST /auth/token,
              GET /.well-known/cxone-configuration?tenantId=, /inContactAPI/services/vNN.0/...
  inspection  /_sim/lists, /_sim/jobs, /_sim/requests, /_sim/webhooks/{name}, /_sim/faults,
              POST /_sim/reset  (see docs/simulator.md)

The config file (TOML) has sections [v2], [call_lists], [jobs], [limits] and [faults]
with [faults.rate_limit], [faults.latency], [faults.errors], [faults.connections],
[faults.websocket] and [faults.jobs]; every fault is off by default. Command-line options
override the file.
"""


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``simulate`` subcommand."""
    p = subparsers.add_parser(
        "simulate", help="run the CXone simulator (v2 and call-lists)",
        description="Run the CXone simulator: both API profiles, limits, fault injection, "
        "a webhook receiver and an inspection API, on one port.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--host", default=None, help="address to listen on (default: config, else 127.0.0.1)")
    p.add_argument("--port", type=int, default=None,
                   help="port to listen on; 0 picks a free one (default: the file's port, else 8700)")
    p.add_argument("--config", help="simulator configuration file (TOML); see docs/simulator.md")
    p.add_argument("--items-per-second", type=float, default=None,
                   help="job processing rate, items per second (default: 50000)")
    p.add_argument("--seed", type=int, default=None, help="seed of the random faults and job outcomes")
    p.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"],
                   help="log level (default: INFO)")
    p.set_defaults(func=_run)


def _load(args: argparse.Namespace) -> SimulatorConfig:
    cfg = SimulatorConfig.from_file(args.config) if args.config else SimulatorConfig()
    if args.items_per_second is not None:
        jobs = dataclasses.replace(cfg.jobs, items_per_second=args.items_per_second)
        cfg = dataclasses.replace(cfg, jobs=jobs)
    if args.seed is not None:
        cfg = dataclasses.replace(cfg, faults=dataclasses.replace(cfg.faults, seed=args.seed))
    if args.host is not None:
        cfg = dataclasses.replace(cfg, host=args.host)
    if args.port is not None:
        cfg = dataclasses.replace(cfg, port=args.port)
    elif cfg.port == 0:
        cfg = dataclasses.replace(cfg, port=DEFAULT_PORT)
    return cfg


async def _serve(cfg: SimulatorConfig) -> None:
    sim = Simulator(cfg)
    await sim.start()
    print(f"CXone simulator listening on {sim.url}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        await sim.stop()


def _run(args: argparse.Namespace) -> int:
    logging.basicConfig(level=args.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        cfg = _load(args)
        asyncio.run(_serve(cfg))
    except ConfigError as exc:
        print(f"simulate: {exc}", file=sys.stderr)
        return 2
    except SimulatorError as exc:
        print(f"simulate: {exc}", file=sys.stderr)
        return 1
    return 0
