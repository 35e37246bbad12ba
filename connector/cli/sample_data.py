"""Synthetic CRM opt-in events and DNC entries, with the outcome the connector must reach.

Pure and deterministic: the same :class:`SampleSpec` (seed included) gives the same events,
DNC entries and expectations. Timestamps count from ``spec.start_ms``.

Model:

* ``contacts`` distinct contacts, each with its own distinct US number (valid for
  phonenumbers: a real NPA from :data:`VALID_NPAS`, an exchange ``NXX`` of 200-999 that is
  neither ``555`` nor ``N11``). A share ``invalid_share`` of the contacts hold an invalid
  number instead, in every one of their events, so each of those events is dead-lettered.
* ``count`` events: the first ``contacts`` events give every contact one event, the rest
  pick a contact at random. Each event writes its contact's number in E.164, national
  (``national_share``) or messy (``messy_share``) form; ``opt_out_share`` of the events are
  opt-outs.
* ``dnc_share`` of the distinct valid contact numbers are also written to the DNC topic
  (list ``dnc_list``), plus ``extra_dnc`` unrelated numbers that no contact holds.
* Calling-hours data, by the event's sequence number: one event in four carries a
  ``time_zone``, one a ``zip_code`` (now and then as ZIP+4), one a ``state`` (code or name),
  and one none of them (its zone comes from the number). Every value matches the contact's
  area code (:data:`NPA_LOCATIONS`), so each source gives the same zone.

Expected outcome, per contact (:class:`ExpectedContact`): the final state is the contact's
last event. It is *compliant* (must end up sent to CXone) when that last event is an
opt-in, its number is valid and the number is not on the DNC topic; its ``time_zone`` is
the zone of its area code, whichever source gives it.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any

#: US area codes that phonenumbers accepts as valid for any exchange 200-999.
VALID_NPAS: tuple[int, ...] = (201, 202, 206, 212, 213, 303, 305, 312, 404, 415, 512, 602, 617, 646, 702,
                               713, 805, 917)
#: Per area code of :data:`VALID_NPAS`: its time zone (phonenumbers' for the number), a ZIP
#: code and the state it serves, each of which gives that zone.
NPA_LOCATIONS: dict[int, tuple[str, str, str]] = {
    201: ("America/New_York", "07030", "NJ"), 202: ("America/New_York", "20001", "DC"),
    206: ("America/Los_Angeles", "98101", "WA"), 212: ("America/New_York", "10001", "NY"),
    213: ("America/Los_Angeles", "90012", "CA"), 303: ("America/Denver", "80202", "CO"),
    305: ("America/New_York", "33101", "FL"), 312: ("America/Chicago", "60601", "IL"),
    404: ("America/New_York", "30303", "GA"), 415: ("America/Los_Angeles", "94103", "CA"),
    512: ("America/Chicago", "78701", "TX"), 602: ("America/Phoenix", "85004", "AZ"),
    617: ("America/New_York", "02108", "MA"), 646: ("America/New_York", "10016", "NY"),
    702: ("America/Los_Angeles", "89101", "NV"), 713: ("America/Chicago", "77002", "TX"),
    805: ("America/Los_Angeles", "93001", "CA"), 917: ("America/New_York", "10022", "NY"),
}
#: State names, for events that spell the state out.
_STATE_NAMES = {"NJ": "New Jersey", "DC": "District of Columbia", "WA": "Washington", "NY": "New York",
                "CA": "California", "CO": "Colorado", "FL": "Florida", "IL": "Illinois", "GA": "Georgia",
                "TX": "Texas", "AZ": "Arizona", "MA": "Massachusetts", "NV": "Nevada"}

#: Exchanges left out for realism (service codes N11 and the fictional 555).
_EXCLUDED_NXX = frozenset({211, 311, 411, 511, 555, 611, 711, 811, 911})
_NXX = tuple(n for n in range(200, 1000) if n not in _EXCLUDED_NXX)

#: Invalid phone strings, each failing for the reason in its comment.
INVALID_PHONES: tuple[str, ...] = (
    "12345",              # too short to be any US number
    "212-345-678",        # 9 digits: one short of a US national number
    "n/a",                # no digits at all
    "unknown",            # letters only: nothing to parse
    "+999 1234567",       # +999 is not an assigned country code
    "+1 123 456 7890",    # a US area code never starts with 1
    "+1 212 345 67890123",  # too long for a US number
    "",                   # empty
)

_FIRST = ("Ada", "Grace", "Alan", "Edsger", "Barbara", "Donald", "Frances", "Ken", "Radia", "Tim")
_LAST = ("Lovelace", "Hopper", "Turing", "Dijkstra", "Liskov", "Knuth", "Allen", "Thompson", "Perlman", "Lee")
_SEGMENTS = ("gold", "silver", "bronze")


@dataclass(frozen=True)
class SampleSpec:
    """What to generate. Shares are fractions in [0, 1].

    Raises (``validate``):
        ValueError: a count is negative or a share is out of range.
    """

    count: int = 1000
    contacts: int = 250
    national_share: float = 0.2
    messy_share: float = 0.1
    invalid_share: float = 0.01
    dnc_share: float = 0.1
    opt_out_share: float = 0.05
    extra_dnc: int = 0
    seed: int = 42
    region: str = "US"
    dnc_list: str = "sample-dnc"
    start_ms: int = 1_700_000_000_000

    def validate(self) -> None:
        """Check the counts and shares.

        Raises:
            ValueError: a count is negative, ``contacts`` is 0 while ``count`` is not, a
                share is outside [0, 1], or national + messy exceeds 1.
        """
        if self.count < 0 or self.contacts < 0 or self.extra_dnc < 0:
            raise ValueError("count, contacts and extra_dnc must not be negative")
        if self.count > 0 and self.contacts == 0:
            raise ValueError("contacts must be at least 1 when count is above 0")
        for name in ("national_share", "messy_share", "invalid_share", "dnc_share", "opt_out_share"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be within [0, 1], got {value}")
        if self.national_share + self.messy_share > 1.0:
            raise ValueError("national_share + messy_share must not exceed 1")
        if self.region != "US":
            raise ValueError("only region US is generated for now")


@dataclass(frozen=True)
class KeyedRecord:
    """A record to produce: the key (UTF-8 string) and the Avro value (None: tombstone)."""

    key: str
    value: dict[str, Any] | None


@dataclass(frozen=True)
class ExpectedContact:
    """The final state of one contact after every event."""

    contact_id: str
    last_event_id: str
    opted_in: bool
    e164: str | None
    on_dnc: bool
    #: The zone its contact-list record must carry (None for an invalid number).
    time_zone: str | None = None

    @property
    def compliant(self) -> bool:
        """True when the contact must end up sent to CXone."""
        return self.opted_in and self.e164 is not None and not self.on_dnc


@dataclass
class SampleData:
    """Generated events, DNC entries and the expected outcome."""

    events: list[KeyedRecord]
    dnc: list[KeyedRecord]
    expected: dict[str, ExpectedContact]
    stats: dict[str, int] = field(default_factory=dict)

    @property
    def compliant_contacts(self) -> frozenset[str]:
        """Contact ids whose final state must be on the CXone list."""
        return frozenset(c.contact_id for c in self.expected.values() if c.compliant)


def _e164(number: int) -> str:
    return f"+1{number}"


def render(number: int, style: str, variant: int) -> str:
    """Write the 10-digit US ``number`` in a given style.

    Args:
        number: NPA-NXX-XXXX as one 10-digit integer.
        style: ``e164``, ``national`` or ``messy``.
        variant: picks one of the style's spellings (any int; taken modulo).
    """
    d = str(number)
    npa, nxx, line = d[:3], d[3:6], d[6:]
    if style == "e164":
        return f"+1{d}"
    forms: tuple[str, ...]
    if style == "national":
        forms = (f"({npa}) {nxx}-{line}", f"{npa}-{nxx}-{line}", d, f"{npa} {nxx} {line}")
    else:
        forms = (f"  +1 ({npa}) {nxx}.{line} ", f"1-{npa}-{nxx}-{line}", f"+1.{npa}.{nxx}.{line}",
                 f"({npa}){nxx}-{line}", f"1 {npa} {nxx} {line}\t", f"+1-{npa}-{nxx}-{line}")
    return forms[variant % len(forms)]


def location_fields(number: int, seq: int) -> dict[str, str | None]:
    """The calling-hours fields of event ``seq`` of a contact with the 10-digit ``number``."""
    zone, zip_code, state = NPA_LOCATIONS[number // 10_000_000]
    kind = seq % 4
    return {
        "time_zone": zone if kind == 0 else None,
        "zip_code": (f"{zip_code}-{seq % 10_000:04d}" if seq % 8 == 5 else zip_code) if kind == 1 else None,
        "state": (_STATE_NAMES[state] if seq % 8 == 6 else state) if kind == 2 else None,
    }


def _draw_numbers(rng: random.Random, how_many: int, taken: set[int]) -> list[int]:
    out: list[int] = []
    while len(out) < how_many:
        n = rng.choice(VALID_NPAS) * 10_000_000 + rng.choice(_NXX) * 10_000 + rng.randrange(10_000)
        if n not in taken:
            taken.add(n)
            out.append(n)
    return out


def generate(spec: SampleSpec) -> SampleData:
    """Generate the events, DNC entries and expectations that ``spec`` describes.

    Raises:
        ValueError: the spec is invalid (see :meth:`SampleSpec.validate`).
    """
    spec.validate()
    rng = random.Random(spec.seed)  # noqa: S311 - test data, not security
    taken: set[int] = set()
    numbers = _draw_numbers(rng, spec.contacts, taken)
    contact_ids = [f"C{i:08d}" for i in range(spec.contacts)]
    invalid: dict[int, str] = {
        i: INVALID_PHONES[rng.randrange(len(INVALID_PHONES))]
        for i in range(spec.contacts)
        if rng.random() < spec.invalid_share
    }

    valid_idx = [i for i in range(spec.contacts) if i not in invalid]
    n_dnc = round(len(valid_idx) * spec.dnc_share)
    dnc_idx = set(rng.sample(valid_idx, n_dnc))
    dnc: list[KeyedRecord] = [
        KeyedRecord(_e164(numbers[i]), _dnc_value(spec, "customer request")) for i in sorted(dnc_idx)
    ]
    dnc.extend(
        KeyedRecord(_e164(n), _dnc_value(spec, "registry")) for n in _draw_numbers(rng, spec.extra_dnc, taken)
    )

    events: list[KeyedRecord] = []
    last: dict[int, tuple[str, bool]] = {}
    styles = {"e164": 0, "national": 0, "messy": 0, "invalid": 0}
    located = {"time_zone": 0, "zip_code": 0, "state": 0}
    opt_outs = 0
    for seq in range(spec.count):
        i = seq if seq < spec.contacts else rng.randrange(spec.contacts)
        roll = rng.random()
        if i in invalid:
            phone, style = invalid[i], "invalid"
        else:
            style = "national" if roll < spec.national_share else (
                "messy" if roll < spec.national_share + spec.messy_share else "e164")
            phone = render(numbers[i], style, rng.randrange(1 << 16))
        styles[style] += 1
        opted_in = rng.random() >= spec.opt_out_share
        opt_outs += not opted_in
        event_id = f"evt-{spec.seed}-{seq:09d}"
        last[i] = (event_id, opted_in)
        location = location_fields(numbers[i], seq)
        for name, value in location.items():
            located[name] += value is not None
        events.append(KeyedRecord(contact_ids[i], {
            "event_id": event_id,
            "contact_id": contact_ids[i],
            "phone": phone,
            "region_hint": spec.region if style == "national" and seq % 2 else None,
            "first_name": _FIRST[i % len(_FIRST)],
            "last_name": _LAST[(i // len(_FIRST)) % len(_LAST)],
            "email": f"{contact_ids[i].lower()}@example.com",
            "opted_in": opted_in,
            "changed_at": spec.start_ms + seq,
            "source": "crm",
            "custom_fields": {"segment": _SEGMENTS[i % len(_SEGMENTS)], "seq": str(seq)},
            **location,
        }))

    expected = {
        contact_ids[i]: ExpectedContact(
            contact_id=contact_ids[i],
            last_event_id=event_id,
            opted_in=opted_in,
            e164=None if i in invalid else _e164(numbers[i]),
            on_dnc=i in dnc_idx,
            time_zone=None if i in invalid else NPA_LOCATIONS[numbers[i] // 10_000_000][0],
        )
        for i, (event_id, opted_in) in last.items()
    }
    data = SampleData(events=events, dnc=dnc, expected=expected)
    data.stats = {
        "events": spec.count,
        "contacts": len(expected),
        "e164_format": styles["e164"],
        "national_format": styles["national"],
        "messy_format": styles["messy"],
        "invalid_events": styles["invalid"],
        "invalid_contacts": sum(1 for i in invalid if i in last),
        "opt_out_events": opt_outs,
        "dnc_contact_numbers": len(dnc_idx),
        "dnc_extra_numbers": spec.extra_dnc,
        "expected_compliant": len(data.compliant_contacts),
        "time_zone_events": located["time_zone"],
        "zip_code_events": located["zip_code"],
        "state_events": located["state"],
    }
    return data


def _dnc_value(spec: SampleSpec, reason: str) -> dict[str, Any]:
    return {"list_name": spec.dnc_list, "reason": reason, "added_at": spec.start_ms - 86_400_000,
            "expires_at": None}
