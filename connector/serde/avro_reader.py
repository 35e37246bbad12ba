"""A schemaless Avro reader compiled from one record schema: the decoder's hot path.

fastavro's reader walks the schema for every record (a dictionary look-up and a call per
field); for the flat records of the CRM topic that is most of its cost. This module turns a
parsed record schema into a *program*, one step per field (:func:`flat_program`), and runs
it with the C reader of ``connector/serde/_avro_flat.pyx`` when ``pip install`` built it
(:data:`NATIVE`), or else as the source of one straight-line Python function compiled once.
Measured on the 2-core dev VM with ContactOptInChanged records of ~116 bytes: 1.0 µs per
record in C, 5.0-6.4 µs in Python, against fastavro's 9.8 µs.

Only what flat CRM records need is compiled: ``null``, ``boolean``, ``int``, ``long``,
``string``, ``bytes``, a union of ``null`` and one of those, and a map or array of one of
those. For any other schema :func:`compile_reader` returns None and the caller keeps using
fastavro (:class:`connector.serde.codec.AvroCodec` does). Neither reader is ever more lenient than
fastavro: ``tests/unit/test_avro_reader.py`` checks, for both, that for any record they read
the same as fastavro, and that whatever bytes they accept, fastavro reads the same way.

Fields added later: a record schema may end with fields marked ``"x-added-later": true``
(optional fields, ``["null", T]`` with a null default, added at the end). A schemaless record
written before they existed ends where they begin; both readers then fill them with null, as
fastavro does when it resolves the older writer schema against ours
(:func:`required_fields`). Ending anywhere else is still ``truncated``.

Errors (mapped to :class:`connector.errors.SerdeError` by the codec): :class:`EOFError`
when the bytes end early, :class:`UnicodeDecodeError` for a string that is not UTF-8,
:class:`ValueError` for anything malformed (a negative length, a union branch or boolean
byte out of range, a varint longer than 10 bytes).
"""

from __future__ import annotations

from collections.abc import Callable
from types import ModuleType
from typing import Any

_avro_flat: ModuleType | None
try:  # built by ``pip install`` where a C compiler is found (setup.py)
    from connector.serde import _avro_flat
except ImportError:  # pragma: no cover - a build without the C extension
    _avro_flat = None

#: True when the C reader (``connector/serde/_avro_flat.pyx``) was built and is used.
NATIVE = _avro_flat is not None

#: ``read(data, pos) -> (record, end)``: one record from ``data[pos:]``.
Reader = Callable[[bytes, int], tuple[dict[str, Any], int]]

#: The primitive types both compiled readers and writers handle (``null`` apart).
SIMPLE_TYPES = ("boolean", "int", "long", "string", "bytes")
_MAX_VARINT_BYTES = 10


def read_long(data: bytes, pos: int) -> tuple[int, int]:
    """A zig-zag varint at ``pos``: ``(value, next position)``.

    Raises:
        IndexError: the bytes end inside it.
        ValueError: longer than 10 bytes (no 64-bit value is).
    """
    b = data[pos]
    pos += 1
    n = b & 0x7F
    shift = 7
    while b & 0x80:
        if shift >= 7 * _MAX_VARINT_BYTES:
            raise ValueError("malformed varint: more than 10 bytes")
        b = data[pos]
        pos += 1
        n |= (b & 0x7F) << shift
        shift += 7
    return (n >> 1) ^ -(n & 1), pos


def _long(target: str) -> list[str]:
    # one-byte values (lengths below 64, union indexes, small counts) skip the call
    return [
        "b = data[pos]",
        "if b < 0x80:",
        f"    {target} = (b >> 1) ^ -(b & 1)",
        "    pos += 1",
        "else:",
        f"    {target}, pos = read_long(data, pos)",
    ]


def _sized(target: str, decode: bool) -> list[str]:
    return [
        *_long("n"),
        "if n < 0:",
        "    raise ValueError('negative length')",
        "end = pos + n",
        "if end > size:",
        "    raise EOFError('truncated')",
        f"{target} = data[pos:end]{'.decode()' if decode else ''}",
        "pos = end",
    ]


def _boolean(target: str) -> list[str]:
    return [
        "b = data[pos]",
        "pos += 1",
        "if b > 1:",
        "    raise ValueError('boolean byte out of range')",
        f"{target} = b == 1",
    ]


def _primitive(kind: str, target: str) -> list[str]:
    if kind == "boolean":
        return _boolean(target)
    if kind in ("int", "long"):
        return _long(target)
    return _sized(target, decode=kind == "string")


def _indent(lines: list[str], depth: int = 1) -> list[str]:
    return ["    " * depth + line for line in lines]


def simple_type(schema: Any) -> Any:
    """``{"type": "long"}`` is ``"long"``; a logical type is left alone (and not compiled:
    fastavro would turn it into another Python type)."""
    if isinstance(schema, dict) and "logicalType" not in schema and schema.get("type") in (*SIMPLE_TYPES, "null"):
        return schema["type"]
    return schema


#: Field kinds of a program step (the C reader numbers them the same way).
KINDS = {"null": 0, "boolean": 1, "int": 2, "long": 2, "string": 3, "bytes": 4}
_KIND_NAMES = {kind: name for name, kind in KINDS.items()}  # 2 is "long" (an "int" reads the same)
#: Containers of a program step.
PLAIN, MAP, ARRAY = 0, 1, 2

#: One field of a flat record: ``(name, kind, null_index, container)``; ``null_index`` is the
#: null branch of a two-branch union (0 or 1), or -1 when the field is not such a union;
#: ``container`` says whether a value is one ``kind``, or a map or an array of them.
Step = tuple[str, int, int, int]


def _step(name: str, schema: Any) -> Step | None:
    """The program step reading one field of ``schema``; None if not compilable."""
    schema = simple_type(schema)
    null_index = -1
    if isinstance(schema, list):
        branches = [simple_type(branch) for branch in schema]
        if len(branches) != 2 or "null" not in branches:
            return None
        null_index = branches.index("null")
        schema = branches[1 - null_index]
        if not (isinstance(schema, str) and schema in SIMPLE_TYPES):
            return None
    if isinstance(schema, str) and schema in KINDS:
        return (name, KINDS[schema], null_index, PLAIN)
    if isinstance(schema, dict) and schema.get("type") in ("map", "array"):
        inner = simple_type(schema["values"] if schema["type"] == "map" else schema["items"])
        if not (isinstance(inner, str) and inner in SIMPLE_TYPES):
            return None
        return (name, KINDS[inner], null_index, MAP if schema["type"] == "map" else ARRAY)
    return None


def flat_program(schema: Any) -> list[Step] | None:
    """The steps reading a parsed (``fastavro.parse_schema``) record schema, field by field.

    Returns:
        One :data:`Step` per field, or None when the schema holds a type this module does
        not compile.
    """
    if not isinstance(schema, dict) or schema.get("type") != "record":
        return None
    program: list[Step] = []
    for field in schema.get("fields", ()):
        step = _step(str(field["name"]), field.get("type"))
        if step is None:
            return None
        program.append(step)
    return program


#: The field property that marks an optional field added at the end of a record schema.
ADDED_LATER = "x-added-later"


def required_fields(schema: Any) -> int:
    """How many leading fields of a record schema every record holds: all but the trailing run
    of fields marked :data:`ADDED_LATER` with a null default (those may be absent from a
    schemaless record written before they were added)."""
    fields = list(schema.get("fields", ())) if isinstance(schema, dict) else []
    n = len(fields)
    while n and fields[n - 1].get(ADDED_LATER) is True and "default" in fields[n - 1] \
            and fields[n - 1]["default"] is None:
        n -= 1
    return n


def _container(kind: str, container: int, target: str, depth: int) -> list[str]:
    if container == PLAIN:
        return _primitive(kind, target) if kind != "null" else [f"{target} = None"]
    is_map = container == MAP
    acc, count = f"c{depth}", f"k{depth}"
    body = [*_sized("key", decode=True), *_primitive(kind, f"{acc}[key]")] if is_map else [
        *_primitive(kind, "item"), f"{acc}.append(item)"]
    return [
        f"{acc} = {{}}" if is_map else f"{acc} = []",
        "while True:",
        *_indent(_long(count)),
        f"    if {count} == 0:",
        "        break",
        f"    if {count} < 0:",  # a negative count is followed by the block's byte size
        f"        {count} = -{count}",
        "        _, pos = read_long(data, pos)",
        f"    for _ in range({count}):",
        *_indent(body, 2),
        f"{target} = {acc}",
    ]


def _record(program: list[Step], present: int) -> str:
    """The source of the record dict: the first ``present`` fields read, the others null."""
    values = [f"v{i}" if i < present else "None" for i in range(len(program))]
    # field names enter the source only as string literals (repr), never as code
    return "{" + ", ".join(f"{step[0]!r}: {value}" for step, value in zip(program, values, strict=True)) + "}"


def _python_reader(name: str, program: list[Step], required: int | None = None) -> Reader:
    """The program as the source of one straight-line Python function, compiled.

    ``required``: fields every record holds (:func:`required_fields`); a record that ends
    before a later field gets null for it and the rest.
    """
    required = len(program) if required is None else required
    lines = ["def read(data, pos):", "    size = len(data)", "    try:"]
    for index, (_, kind, null_index, container) in enumerate(program):
        if index >= required:
            lines += ["        if pos == size:", f"            return {_record(program, index)}, pos"]
        target = f"v{index}"
        body = _container(_KIND_NAMES[kind], container, target, index)
        if null_index >= 0:
            body = [
                *_long("u"),
                f"if u == {null_index}:",
                f"    {target} = None",
                f"elif u == {1 - null_index}:",
                *_indent(body),
                "else:",
                "    raise ValueError('union branch out of range')",
            ]
        lines += _indent(body, 2)
    lines += [
        "    except IndexError:",
        "        raise EOFError('truncated') from None",
        f"    return {_record(program, len(program))}, pos",
    ]
    namespace: dict[str, Any] = {"read_long": read_long}
    exec(compile("\n".join(lines), f"<avro reader {name}>", "exec"), namespace)  # noqa: S102
    reader: Reader = namespace["read"]
    return reader


def compile_reader(schema: Any, *, native: bool = True) -> Reader | None:
    """Compile a reader for a parsed (``fastavro.parse_schema``) record schema.

    Args:
        schema: the record schema.
        native: use the C reader when it was built (:data:`NATIVE`); False always gives
            the generated Python one (the tests compare the two).

    Returns:
        The reader, or None when the schema holds a type this module does not compile.
    """
    program = flat_program(schema)
    if program is None:
        return None
    required = required_fields(schema)
    # a record wider than the C reader's fixed arrays gets the Python reader
    if native and _avro_flat is not None and len(program) <= _avro_flat.MAX_FIELDS:
        return _avro_flat.FlatReader(program, read_long, required)  # type: ignore[no-any-return]
    return _python_reader(str(schema.get("name")), program, required)
