"""The connector's one exception tree.

Every error says whether retrying the same operation may succeed, so retry code asks the
exception (``err.retriable``) rather than matching on types, as aiokafka does. Each
subpackage (``kafka``, ``cxone``, ``simulator``) adds its own ``exceptions.py`` whose errors
derive from :class:`ConnectorError`.

    ConnectorError
    ├── ConfigError            a configuration file or override is invalid (fatal)
    ├── SerdeError             bytes could not be decoded or a record encoded (fatal for the record)
    ├── PhoneError             a phone number is not a valid, possible number (fatal for the record)
    ├── kafka.exceptions.KafkaError ...
    ├── cxone.exceptions.CXoneError ...
    └── simulator.exceptions.SimulatorError ...
"""

from __future__ import annotations


class ConnectorError(Exception):
    """Root of every error the connector raises on purpose.

    Attributes:
        retriable: True when the same operation may succeed if tried again later.
    """

    retriable: bool = False

    def __init__(self, message: str, *, retriable: bool | None = None) -> None:
        super().__init__(message)
        if retriable is not None:
            self.retriable = retriable


class ConfigError(ConnectorError):
    """A configuration problem. ``problems`` lists every ``(key, reason)`` found."""

    def __init__(self, problems: list[tuple[str, str]]) -> None:
        self.problems = problems
        lines = "\n".join(f"  {key}: {reason}" for key, reason in problems)
        super().__init__(f"{len(problems)} configuration problem(s):\n{lines}")


class SerdeError(ConnectorError):
    """Bytes that could not be decoded, or a record that could not be encoded.

    The message always says why (truncated, wrong magic byte, unknown schema id, ...).
    """


class PhoneError(ConnectorError):
    """A phone number that cannot be normalised to a valid E.164 number.

    Attributes:
        reason: a short, bounded reason code usable as a metric label
            (``unparseable``, ``invalid``, ``too_long``, ``empty``, ...).
    """

    def __init__(self, message: str, *, reason: str) -> None:
        super().__init__(message)
        self.reason = reason
