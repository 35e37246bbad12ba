# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""C reader for flat Avro records: the native twin of :mod:`connector.serde.avro_reader`.

:func:`connector.serde.avro_reader.compile_reader` builds a *program* from a record schema, one
``(name, kind, union_null_index, container)`` tuple per field, and hands it to
:class:`FlatReader` when this module was built (``pip install`` compiles it; without a C
compiler the generated Python reader is used instead). Both read the same bytes the same
way and raise the same errors: :class:`EOFError` ``truncated``, :class:`UnicodeDecodeError`,
:class:`ValueError` for malformed data (``tests/unit/test_avro_reader.py`` runs its
differential tests against both).

Varints of 10 bytes (values beyond 63 bits) are left to the Python ``read_long`` it is
given, so big values come out exactly as the Python reader reads them.
"""

from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from cpython.dict cimport PyDict_SetItem
from cpython.list cimport PyList_Append
from cpython.unicode cimport PyUnicode_DecodeUTF8
from libc.stdint cimport int64_t, uint64_t

# Field kinds, as avro_reader.KINDS numbers them.
cdef enum:
    K_NULL = 0
    K_BOOLEAN = 1
    K_LONG = 2
    K_STRING = 3
    K_BYTES = 4

# Containers.
cdef enum:
    C_NONE = 0
    C_MAP = 1
    C_ARRAY = 2

cdef enum:
    _MAX_FIELDS = 64

#: The most fields a :class:`FlatReader` takes.
MAX_FIELDS = _MAX_FIELDS


cdef class _Cursor:
    cdef const unsigned char* buf
    cdef Py_ssize_t size
    cdef Py_ssize_t pos
    cdef bytes data
    cdef object read_long


cdef inline int _byte(_Cursor c) except -1:
    if c.pos >= c.size:
        raise EOFError("truncated")
    cdef int b = c.buf[c.pos]
    c.pos += 1
    return b


cdef object _long(_Cursor c):
    """A zig-zag varint as a Python int."""
    cdef Py_ssize_t start = c.pos
    cdef uint64_t n = 0
    cdef int shift = 0
    cdef int b
    while True:
        if c.pos >= c.size:
            raise EOFError("truncated")
        b = c.buf[c.pos]
        c.pos += 1
        n |= (<uint64_t>(b & 0x7F)) << shift
        if not (b & 0x80):
            return <int64_t>((n >> 1) ^ (0 - (n & 1)))
        shift += 7
        if shift >= 63:
            # 10 bytes or more: the Python reader's exact arbitrary-precision arithmetic
            try:
                value, c.pos = c.read_long(c.data, start)
            except IndexError:
                raise EOFError("truncated") from None
            return value


cdef inline int64_t _small_long(_Cursor c) except? -1:
    """A varint known to be small in practice (lengths, counts, union indexes)."""
    cdef int b
    if c.pos < c.size:
        b = c.buf[c.pos]
        if b < 0x80:
            c.pos += 1
            return (b >> 1) ^ -(b & 1)
    value = _long(c)
    # beyond 64 bits (a 10-byte varint): clamped, which keeps what follows the same as in
    # Python (a length past the end, a negative length, a union index out of range)
    if value > 0x7FFFFFFFFFFFFFFF:
        return 0x7FFFFFFFFFFFFFFF
    if value < -0x7FFFFFFFFFFFFFFF:
        return -0x7FFFFFFFFFFFFFFF
    return value


cdef Py_ssize_t _sized(_Cursor c) except -1:
    """Read a length and check its bytes are there; returns the start of the bytes."""
    cdef int64_t n = _small_long(c)
    if n < 0:
        raise ValueError("negative length")
    if n > c.size - c.pos:
        raise EOFError("truncated")
    cdef Py_ssize_t start = c.pos
    c.pos += <Py_ssize_t>n
    return start


cdef object _primitive(_Cursor c, int kind):
    cdef int b
    cdef Py_ssize_t start
    if kind == K_STRING:
        start = _sized(c)
        return PyUnicode_DecodeUTF8(<const char*>c.buf + start, c.pos - start, NULL)
    if kind == K_LONG:
        return _long(c)
    if kind == K_BOOLEAN:
        b = _byte(c)
        if b > 1:
            raise ValueError("boolean byte out of range")
        return b == 1
    if kind == K_BYTES:
        start = _sized(c)
        return PyBytes_FromStringAndSize(<const char*>c.buf + start, c.pos - start)
    return None


cdef int64_t _block_count(_Cursor c) except? -1:
    """The item count of the next block (0 ends the map or array)."""
    cdef int64_t count = _small_long(c)
    if count < 0:  # a negative count is followed by the block's byte size
        count = -count
        _long(c)
    return count


cdef object _container(_Cursor c, int kind, int container):
    cdef int64_t count
    cdef int64_t i
    cdef Py_ssize_t start
    cdef dict mapping = {}
    cdef list items = []
    while True:
        count = _block_count(c)
        if count == 0:
            return mapping if container == C_MAP else items
        for i in range(count):
            if container == C_MAP:
                start = _sized(c)
                key = PyUnicode_DecodeUTF8(<const char*>c.buf + start, c.pos - start, NULL)
                PyDict_SetItem(mapping, key, _primitive(c, kind))
            else:
                PyList_Append(items, _primitive(c, kind))


cdef class FlatReader:
    """``reader(data, pos) -> (record, end)`` for one flat record schema.

    Args:
        program: one ``(name, kind, null_index, container)`` per field, in schema order:
            ``kind`` 0 null, 1 boolean, 2 int or long, 3 string, 4 bytes; ``null_index`` the
            null branch of a two-branch union (0 or 1), or -1; ``container`` 0 none, 1 map
            of ``kind``, 2 array of ``kind``.
        read_long: the Python varint reader, for varints of 10 bytes.
        required: how many leading fields every record holds (all by default); a record that
            ends before a later field gets None for it and every field after it (fields added
            later, ``connector.serde.avro_reader.required_fields``).
    """

    cdef tuple _names
    cdef int _count
    cdef int _required
    cdef int _kinds[_MAX_FIELDS]
    cdef int _nulls[_MAX_FIELDS]
    cdef int _containers[_MAX_FIELDS]
    cdef object _read_long

    def __init__(self, program, read_long, required=None):
        program = tuple(program)
        if len(program) > MAX_FIELDS:
            raise ValueError(f"more than {MAX_FIELDS} fields")
        self._names = tuple(str(name) for name, _, _, _ in program)
        self._count = len(program)
        self._required = self._count if required is None else int(required)
        if not 0 <= self._required <= self._count:
            raise ValueError("required must be between 0 and the number of fields")
        for i, (_, kind, null_index, container) in enumerate(program):
            if kind not in (K_NULL, K_BOOLEAN, K_LONG, K_STRING, K_BYTES) \
                    or null_index not in (-1, 0, 1) or container not in (C_NONE, C_MAP, C_ARRAY):
                raise ValueError(f"bad program step {i}")
            self._kinds[i] = kind
            self._nulls[i] = null_index
            self._containers[i] = container
        self._read_long = read_long

    def __call__(self, data, Py_ssize_t pos):
        if type(data) is not bytes:  # a bytearray reads as the Python reader reads it
            data = bytes(data)
        cdef _Cursor c = _Cursor.__new__(_Cursor)
        c.data = data
        c.buf = <const unsigned char*>PyBytes_AS_STRING(data)
        c.size = PyBytes_GET_SIZE(data)
        if pos < 0 or pos > c.size:
            raise EOFError("truncated")
        c.pos = pos
        c.read_long = self._read_long
        cdef dict record = {}
        cdef int i, j
        cdef int null_index
        cdef int64_t u
        for i in range(self._count):
            if i >= self._required and c.pos == c.size:  # written before this field was added
                for j in range(i, self._count):
                    PyDict_SetItem(record, self._names[j], None)
                break
            null_index = self._nulls[i]
            if null_index >= 0:
                u = _small_long(c)
                if u == null_index:
                    PyDict_SetItem(record, self._names[i], None)
                    continue
                if u != 1 - null_index:
                    raise ValueError("union branch out of range")
            if self._containers[i] != C_NONE:
                value = _container(c, self._kinds[i], self._containers[i])
            else:
                value = _primitive(c, self._kinds[i])
            PyDict_SetItem(record, self._names[i], value)
        return record, c.pos
