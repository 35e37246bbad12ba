"""Frozen dataclasses from TOML tables: one loader for the connector's and the simulator's config.

The dataclass fields' types drive the conversion: ``str``, ``int``, ``float``, ``bool``,
``Literal[...]``, ``tuple[T, ...]``, :class:`Secret`, ``X | None``, nested dataclasses, and
``Mapping[str, D]`` of a dataclass ``D``: a table of tables whose keys are chosen by the
user (``[dnc.lists.national]``, ``[dnc.lists.internal]``), each built as a ``D``. Every
problem is collected as ``(dotted.key, reason)`` instead of raised, so a caller can report
them all at once; a bad value keeps its default meanwhile.

Environment overrides are optional: ``env_name(dotted_key)`` names the variable that
overrides a key. Values from the environment are strings, so they are parsed (numbers,
booleans, comma-separated lists). A ``Mapping[str, D]`` is replaced whole by a JSON object
in its own variable (``{"national": {"max_age_days": 31}}``), and each key of each of its
tables has its variable too (``dnc.lists.national.enforce``).
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Literal

Problems = list[tuple[str, str]]


class Secret:
    """A secret value that never shows itself in logs, reprs or tracebacks."""

    __slots__ = ("_value", "source")

    def __init__(self, value: str, source: str = "literal") -> None:
        self._value = value
        self.source = source

    def get(self) -> str:
        """Return the secret itself, for the one place that sends it."""
        return self._value

    def __repr__(self) -> str:
        return f"Secret(<hidden>, source={self.source!r})"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)

    def __bool__(self) -> bool:
        return bool(self._value)


def resolve_secret(ref: str, env: Mapping[str, str]) -> Secret:
    """Resolve an ``env:NAME`` or ``file:PATH`` reference.

    Raises:
        ValueError: the reference has another form, or names a missing variable or file.
    """
    if ref.startswith("env:"):
        name = ref[4:]
        if name not in env:
            raise ValueError(f"environment variable {name} is not set")
        return Secret(env[name], source=ref)
    if ref.startswith("file:"):
        path = Path(ref[5:])
        try:
            return Secret(path.read_text(encoding="utf-8").strip(), source=ref)
        except OSError as exc:
            raise ValueError(f"cannot read secret file {path}: {exc.strerror}") from None
    raise ValueError("secrets must be given as 'env:NAME' or 'file:PATH', never inline")


_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")


def coerce(
    tp: Any, raw: Any, env: Mapping[str, str], *, from_env: bool = False, literal_secrets: bool = False
) -> Any:
    """Check and convert one value to ``tp``.

    Args:
        tp: the field's type.
        raw: the TOML value, or the environment string when ``from_env``.
        env: where ``env:NAME`` secret references are looked up.
        from_env: ``raw`` is an environment string (parse numbers, booleans, lists; a
            secret given this way is the secret itself).
        literal_secrets: accept a secret written inline (the simulator's own test
            credentials); the connector never does.

    Raises:
        ValueError: saying what was expected.
    """
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (types.UnionType, typing.Union):
        if raw is None or raw == "":
            return None
        return coerce(next(a for a in args if a is not type(None)), raw, env,
                      from_env=from_env, literal_secrets=literal_secrets)
    if tp is Secret:
        if isinstance(raw, Secret):
            return raw
        if not isinstance(raw, str):
            raise ValueError("expected a secret reference 'env:NAME' or 'file:PATH'")
        if raw.startswith(("env:", "file:")):
            return resolve_secret(raw, env)
        if from_env:
            return Secret(raw, source="env")  # the override itself lives in the environment
        if literal_secrets:
            return Secret(raw, source="config")
        return resolve_secret(raw, env)  # raises: never inline
    if origin is Literal:
        if raw not in args:
            raise ValueError(f"must be one of {', '.join(map(repr, args))}, not {raw!r}")
        return raw
    if tp is bool:
        if isinstance(raw, bool):
            return raw
        if from_env and isinstance(raw, str) and raw.lower() in _TRUE + _FALSE:
            return raw.lower() in _TRUE
        raise ValueError(f"expected true or false, not {raw!r}")
    if tp is int or tp is float:
        if from_env and isinstance(raw, str):
            try:
                raw = tp(raw)
            except ValueError:
                raise ValueError(f"expected {'an integer' if tp is int else 'a number'}, not {raw!r}") from None
        wrong = isinstance(raw, bool) or not isinstance(raw, int | float)
        if wrong or (tp is int and isinstance(raw, float)):
            raise ValueError(f"expected {'an integer' if tp is int else 'a number'}, not {raw!r}")
        if raw < 0:
            raise ValueError("must not be negative")
        return tp(raw)
    if tp is str:
        if not isinstance(raw, str):
            raise ValueError(f"expected a string, not {type(raw).__name__}")
        return raw
    if origin is tuple:
        if from_env and isinstance(raw, str):
            raw = [part.strip() for part in raw.split(",") if part.strip()]
        if not isinstance(raw, list | tuple):
            raise ValueError("expected a list")
        return tuple(coerce(args[0], item, env, from_env=from_env, literal_secrets=literal_secrets)
                     for item in raw)
    raise ValueError(f"unsupported type {tp!r}")  # a bug in the dataclass, not in the file


def build_dataclass(
    cls: type[Any],
    data: Any,
    prefix: str,
    env: Mapping[str, str],
    problems: Problems,
    *,
    env_name: Callable[[str], str] | None = None,
    literal_secrets: bool = False,
) -> Any:
    """Build dataclass ``cls`` from the table ``data``, recursing into nested dataclasses.

    Args:
        cls: the dataclass.
        data: its table (a non-mapping is reported and treated as empty).
        prefix: the dotted path of ``data`` (``""`` or ``"section."``), for messages.
        env: the environment (secret references and overrides).
        problems: where ``(dotted.key, reason)`` pairs are appended.
        env_name: names the environment variable overriding a dotted key, if any.
        literal_secrets: see :func:`coerce`.

    Returns:
        An instance of ``cls``; fields with problems keep their defaults.
    """
    if not isinstance(data, Mapping):
        problems.append((prefix.rstrip(".") or "<root>", "expected a table"))
        data = {}
    hints = typing.get_type_hints(cls)
    known = {f.name for f in dataclasses.fields(cls)}
    for key in sorted(set(data) - known):
        problems.append((f"{prefix}{key}", "unknown key"))
    values: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        where = f"{prefix}{f.name}"
        tp = hints[f.name]
        table_cls = _table_class(tp)
        if table_cls is not None:
            values[f.name] = _build_tables(table_cls, data.get(f.name, {}), where, env, problems,
                                           env_name=env_name, literal_secrets=literal_secrets)
            continue
        if dataclasses.is_dataclass(tp):
            if f.name in data or env_name is not None:
                values[f.name] = build_dataclass(
                    typing.cast(type[Any], tp), data.get(f.name, {}), f"{where}.", env, problems,
                    env_name=env_name, literal_secrets=literal_secrets,
                )
            continue
        var = env_name(where) if env_name is not None else None
        from_env = var is not None and var in env
        if not from_env and f.name not in data:
            continue
        raw = env[var] if from_env and var is not None else data[f.name]
        try:
            values[f.name] = coerce(tp, raw, env, from_env=from_env, literal_secrets=literal_secrets)
        except ValueError as exc:
            problems.append((var if from_env and var is not None else where, str(exc)))
    return cls(**values)


def _table_class(tp: Any) -> type[Any] | None:
    """``D`` when ``tp`` is ``Mapping[str, D]`` (or ``dict[str, D]``) of a dataclass ``D``."""
    if typing.get_origin(tp) not in (Mapping, dict):
        return None
    args = typing.get_args(tp)
    if len(args) == 2 and args[0] is str and dataclasses.is_dataclass(args[1]):
        return typing.cast(type[Any], args[1])
    return None


def _build_tables(
    cls: type[Any],
    data: Any,
    where: str,
    env: Mapping[str, str],
    problems: Problems,
    *,
    env_name: Callable[[str], str] | None,
    literal_secrets: bool,
) -> dict[str, Any]:
    """A table of ``cls`` tables, keyed by name; its environment variable (a JSON object)
    replaces the file's tables whole."""
    var = env_name(where) if env_name is not None else None
    if var is not None and var in env:
        try:
            data = json.loads(env[var])
        except ValueError:
            problems.append((var, "expected a JSON object of tables"))
            return {}
        where_shown = var
    else:
        where_shown = where
    if not isinstance(data, Mapping) or not all(isinstance(v, Mapping) for v in data.values()):
        problems.append((where_shown, "expected a table of tables"))
        return {}
    return {
        str(name): build_dataclass(cls, table, f"{where}.{name}.", env, problems, env_name=env_name,
                                   literal_secrets=literal_secrets)
        for name, table in data.items()
    }
