"""The chaos soak at full size (issue 12, item 9): not in CI.

Defaults: 200,000 events, 3 instances, 20 instance kills, a broker restart, 30 % 5xx, 429
storms without ``Retry-After`` and WebSocket drops every 5 s. Flags scale it down. The
harness is ``tests/soak/soak_harness.py`` (the CI size runs it too), put on ``sys.path``
here. Prints the plan and progress, one table, and last the line

    soak: lost=N extra=N dnc_sent=N invalid_sent=N uncommitted_partitions=N kills=N broker_restarts=N

Exit code 0 when every check held, 1 otherwise (the problems are listed before the table).

    .venv/bin/python bench/soak.py                                   # full size, ~15 min
    .venv/bin/python bench/soak.py --events 20000 --kills 5 --error-rate 0.1 --feed-s 60
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "soak"))

import benchlib  # noqa: E402
from soak_harness import SoakSpec, run_soak  # type: ignore[import-not-found, unused-ignore]  # noqa: E402

#: The full size: 200,000 events fed at about 330 a second, as in the CI size.
FULL = SoakSpec(events=200_000, contacts=60_000, kills=20, broker_restarts=1, error_rate=0.30, feed_s=600.0,
                drain_timeout_s=300.0, budget_s=1500.0)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--events", type=int, default=FULL.events, help="CRM events produced")
    p.add_argument("--contacts", type=int, default=None, help="distinct contacts (default: events / 3.3)")
    p.add_argument("--instances", type=int, default=FULL.instances, help="connector processes in the group")
    p.add_argument("--kills", type=int, default=FULL.kills, help="instance SIGKILLs, each restarted at once")
    p.add_argument("--broker-restarts", type=int, default=FULL.broker_restarts, help="broker SIGKILLs + restarts")
    p.add_argument("--error-rate", type=float, default=FULL.error_rate, help="share of API requests answered 5xx")
    p.add_argument("--feed-s", type=float, default=None,
                   help="seconds over which the events are produced (default: events / 333)")
    p.add_argument("--drain-timeout-s", type=float, default=FULL.drain_timeout_s,
                   help="how long the group may take to commit everything after the feed")
    p.add_argument("--budget-s", type=float, default=None,
                   help="hard limit of the whole run (default: feed + drain + 300 s)")
    p.add_argument("--workers", type=int, default=FULL.workers, help="ingest.workers of every instance")
    p.add_argument("--seed", type=int, default=FULL.seed, help="seed of the input, the faults and the plan")
    p.add_argument("--no-outage-kill", action="store_true",
                   help="do not move an instance kill into the broker outage")
    p.add_argument("--workdir", type=Path, default=None,
                   help="keep configs and logs here (default: a temporary dir, removed after a clean run)")
    return p.parse_args(argv)


def spec_of(args: argparse.Namespace) -> SoakSpec:
    """The spec the flags describe; the feed rate and the budget follow the event count."""
    feed_s = args.feed_s if args.feed_s is not None else max(30.0, args.events / 333)
    spec: SoakSpec = dataclasses.replace(
        FULL, events=args.events, contacts=args.contacts or max(100, round(args.events / 3.3)),
        instances=args.instances, kills=args.kills, broker_restarts=args.broker_restarts,
        error_rate=args.error_rate, feed_s=feed_s, drain_timeout_s=args.drain_timeout_s, workers=args.workers,
        seed=args.seed, kill_during_outage=not args.no_outage_kill,
        budget_s=args.budget_s if args.budget_s is not None else feed_s + args.drain_timeout_s + 300.0,
    )
    return spec


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    spec = spec_of(args)
    benchlib.print_machine()
    report = asyncio.run(run_soak(spec, args.workdir, say=lambda line: print(line, flush=True)))
    if report.failures:
        print(report.failure_text(), flush=True)
    print(report.table())
    print(report.summary_line(), flush=True)
    return 1 if report.failures else 0


if __name__ == "__main__":
    sys.exit(main())
