"""Generate ``connector/core/time_zone_data.py``: US ZIP code and state time-zone tables.

Run by hand when the data should be refreshed (not at build or run time; the connector never
reaches the network). It needs two packages that the connector does not depend on, in a
throw-away virtual environment::

    python -m venv /tmp/tzgen && /tmp/tzgen/bin/pip install zipcodes==3.0.0 us==4.0.0 phonenumbers
    /tmp/tzgen/bin/python tools/gen_time_zone_data.py > connector/core/time_zone_data.py

Sources:

- ``zipcodes`` (MIT; its dataset: unitedstateszipcodes.org's ZIP code database for the time
  zone of each ZIP, the USPS ZIP Locale Detail for the list of ZIPs): every ZIP code with its
  state and IANA time zone;
- ``us`` (BSD-3-Clause): the state and territory names and USPS codes;
- ``phonenumbers``: the zones it gives North American numbers, so that the offset classes
  below cover every zone a number can resolve to;
- the host's tz database (``zoneinfo``): the offset classes.

What it writes (see the module it generates for how the resolver reads it):

- ``ZIP3``: the three-digit ZIP prefix to the zone most of its ZIP codes are in;
- ``ZIP5``: every ZIP code whose zone differs from its prefix's (so a ZIP code in the data
  resolves exactly as the data says);
- ``STATES``: per state, its zones grouped by *offset class* (zones that keep the same UTC
  offset every day of the reference year), each with its most common zone and its ZIP count,
  most ZIP codes first;
- ``ZONE_CLASS``: zone to offset class, for every zone above and every zone phonenumbers
  gives a +1 number;
- ``STATE_NAMES``: upper-case state names to USPS codes.

Entries whose zone the tz database does not know (a typo in the source, the empty zone of
military APO/FPO codes) are left out: those ZIP codes resolve through their prefix or not at all.
"""

from __future__ import annotations

import collections
import datetime as dt
import zoneinfo
from importlib.metadata import version

import us
import zipcodes
from phonenumbers import tzdata

REFERENCE_YEAR = 2026
PER_LINE = 4


def signature(zone: str) -> tuple[int, ...]:
    """The zone's UTC offset (seconds) at noon UTC on every day of the reference year."""
    tz = zoneinfo.ZoneInfo(zone)
    start = dt.datetime(REFERENCE_YEAR, 1, 1, 12, tzinfo=dt.UTC)
    out = []
    for day in range(365):
        offset = (start + dt.timedelta(days=day)).astimezone(tz).utcoffset()
        out.append(int(offset.total_seconds()) if offset is not None else 0)
    return tuple(out)


def emit_dict(name: str, annotation: str, items: list[tuple[str, str]]) -> list[str]:
    lines = [f"{name}: {annotation} = {{"]
    for i in range(0, len(items), PER_LINE):
        lines.append("    " + " ".join(f"{k}: {v}," for k, v in items[i:i + PER_LINE]))
    lines.append("}")
    return lines


def main() -> None:
    known = zoneinfo.available_timezones()
    rows = [z for z in zipcodes.list_all() if z["timezone"] in known]
    dropped = len(zipcodes.list_all()) - len(rows)

    by3: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
    for z in rows:
        by3[z["zip_code"][:3]][z["timezone"]] += 1
    zip3 = {p: min(c.items(), key=lambda kv: (-kv[1], kv[0]))[0] for p, c in by3.items()}
    zip5 = {z["zip_code"]: z["timezone"] for z in rows if z["timezone"] != zip3[z["zip_code"][:3]]}

    nanp = {zone for key, zones in tzdata.TIMEZONE_DATA.items() if key.startswith("1") for zone in zones}
    zones = sorted(({z["timezone"] for z in rows} | nanp) & known)
    sigs = {zone: signature(zone) for zone in zones}
    # classes numbered by their January then July offset, east first
    ordered = sorted(set(sigs.values()), key=lambda s: (-s[0], -s[181], s))
    class_of = {zone: ordered.index(sigs[zone]) for zone in zones}

    per_state: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
    for z in rows:
        per_state[z["state"]][z["timezone"]] += 1
    states: dict[str, list[tuple[int, str, int]]] = {}
    for state, counts in sorted(per_state.items()):
        groups: dict[int, collections.Counter[str]] = collections.defaultdict(collections.Counter)
        for zone, n in counts.items():
            groups[class_of[zone]][zone] += n
        entries = [(cls, min(g.items(), key=lambda kv: (-kv[1], kv[0]))[0], sum(g.values()))
                   for cls, g in groups.items()]
        states[state] = sorted(entries, key=lambda e: (-e[2], e[0]))

    names = {s.name.upper(): s.abbr for s in us.states.STATES_AND_TERRITORIES if s.abbr in states}

    out = [
        '"""US time zones by ZIP code and state, for calling hours. GENERATED: do not edit.',
        "",
        "Written by ``tools/gen_time_zone_data.py`` (its docstring names the sources and the rules) from",
        f"zipcodes {version('zipcodes')} (MIT; data: unitedstateszipcodes.org and the USPS ZIP Locale Detail),",
        f"us {version('us')} (BSD-3-Clause), phonenumbers {version('phonenumbers')} and the tz database, with",
        f"offset classes over {REFERENCE_YEAR}: {len(rows)} ZIP codes ({dropped} without a known zone left out),",
        f"{len(zip3)} prefixes, {len(zip5)} exceptions, {len(states)} states and territories.",
        "",
        "``connector.core.time_zones`` is the only reader. Pure data: no import, no I/O.",
        '"""',
        "",
        "# ruff: noqa: E501",
        "",
        "#: Three-digit ZIP prefix to the zone most of its ZIP codes are in.",
        *emit_dict("ZIP3", "dict[str, str]", [(repr(k), repr(v)) for k, v in sorted(zip3.items())]),
        "",
        "#: ZIP codes whose zone differs from their prefix's.",
        *emit_dict("ZIP5", "dict[str, str]", [(repr(k), repr(v)) for k, v in sorted(zip5.items())]),
        "",
        "#: USPS state code to its zones per offset class: ``(class, most common zone, ZIP codes)``,",
        "#: most ZIP codes first.",
        "STATES: dict[str, tuple[tuple[int, str, int], ...]] = {",
    ]
    for state, entries in states.items():
        out.append(f"    {state!r}: ({''.join(f'({c}, {z!r}, {n}), ' for c, z, n in entries).rstrip()}),")
    out += [
        "}",
        "",
        f"#: Zone to offset class: zones of one class keep the same UTC offset every day of {REFERENCE_YEAR}.",
        *emit_dict("ZONE_CLASS", "dict[str, int]", [(repr(k), str(v)) for k, v in sorted(class_of.items())]),
        "",
        "#: Upper-case state or territory name to its USPS code.",
        *emit_dict("STATE_NAMES", "dict[str, str]", [(repr(k), repr(v)) for k, v in sorted(names.items())]),
        "",
    ]
    print("\n".join(out))


if __name__ == "__main__":
    main()
