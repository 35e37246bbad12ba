# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""C twins of the DNC bootstrap's per-record work, built with the other extensions.

- :func:`scan` is :meth:`connector.core.dnc_records.DncRecordDecoder.decode_py` (the same
  :class:`Decoded`, the same operations in the same order; the numbers of an operation come
  as an ``array('Q')`` instead of a list, no Python int per record). Keys it cannot read on
  its fast path (``<known list>/+<digits>``, ``+<digits>``), values not seen before, and error
  events go through the decoder's own Python methods.
- :func:`split_sorted` is :func:`connector.core.dnc_table.split_sorted_py`: numbers grouped by
  their high 32 bits, each group's low 32 bits sorted, as ``array('I')``. Sorted input lets a
  roaring bitmap take a bulk of numbers several times faster than the same numbers at random.

The Python originals stay the reference and the fallback where the extension was not built;
``tests/unit/test_dnc_scan.py`` checks that each twin answers as its original.
"""

from cpython cimport array
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from cpython.dict cimport PyDict_GetItem
from cpython.object cimport PyObject
from libc.stdint cimport uint32_t, uint64_t
from libc.stdlib cimport free, malloc, realloc
from libc.string cimport memcmp, memcpy, memset

import array as _array

from connector.errors import SerdeError

cdef array.array _Q = _array.array("Q")
cdef array.array _I = _array.array("I")
cdef uint64_t _MAX_E164 = 999999999999999ULL
cdef object _UNNAMED = "unnamed"
cdef object _UNREADABLE = "unreadable"


cdef inline int _digits(const unsigned char* p, Py_ssize_t n, uint64_t* out) noexcept:
    """E.164 digits (2 to 15, the first not 0) to an int; 0 when they are not."""
    cdef Py_ssize_t i
    cdef uint64_t v = 0
    if n < 2 or n > 15 or p[0] == 48:
        return 0
    for i in range(n):
        if p[i] < 48 or p[i] > 57:
            return 0
        v = v * 10 + (p[i] - 48)
    out[0] = v
    return 1


cdef class _Run:
    """The numbers of the operation being gathered, in a growing C buffer."""
    cdef uint64_t* data
    cdef Py_ssize_t size, cap

    def __cinit__(self):
        self.cap = 4096
        self.size = 0
        self.data = <uint64_t*> malloc(self.cap * sizeof(uint64_t))
        if self.data == NULL:
            raise MemoryError()

    def __dealloc__(self):
        free(self.data)

    cdef int push(self, uint64_t value) except -1:
        cdef uint64_t* grown
        if self.size == self.cap:
            grown = <uint64_t*> realloc(self.data, 2 * self.cap * sizeof(uint64_t))
            if grown == NULL:
                raise MemoryError()
            self.data, self.cap = grown, 2 * self.cap
        self.data[self.size] = value
        self.size += 1
        return 0

    cdef array.array take(self):
        cdef array.array out = array.clone(_Q, self.size, False)
        if self.size:
            memcpy(out.data.as_voidptr, self.data, self.size * sizeof(uint64_t))
        self.size = 0
        return out


cdef inline bint _same(object a, object b):
    if a is b:
        return True
    if a is None or b is None:
        return False
    return a == b


def scan(decoder, list records, long long now_ms, out, table_op, dead_letter):
    """:meth:`DncRecordDecoder.decode_py` in C; fills ``out`` (a fresh ``Decoded``)."""
    cdef dict lists = decoder._lists
    cdef dict cache = decoder._values._cache
    read = decoder._values.read
    unreadable = decoder._unreadable
    slow_key = decoder._slow_key
    event = decoder._event
    cdef list ops = out.ops
    cdef dict ends = out.ends
    cdef dict counts = dict.fromkeys(("upsert", "delete", "expired", "respelled", "list_mismatch",
                                      "missing", "not_utf8", "bad_list", "not_a_number", "unreadable"), 0)
    cdef _Run run = _Run()
    cdef object run_class = None, run_target = None, run_expiry = None
    cdef object key_class, target, expiry, value, key, err, entry, name, found
    cdef object cached_type = None, m_error = None, m_partition = None, m_offset = None, m_key = None, m_value = None
    cdef object last_prefix = None, last_class = None
    cdef long long upserts = 0, deletes = 0, data = 0, mismatch = 0, expired = 0, unread = 0
    cdef long long partition, offset, cur_partition = -1, cur_end = 0
    cdef const unsigned char* p
    cdef Py_ssize_t n, sep, i
    cdef uint64_t number
    cdef bint known
    cdef PyObject* hit
    for record in records:
        if type(record) is not cached_type:
            cached_type = type(record)
            m_error, m_partition, m_offset = cached_type.error, cached_type.partition, cached_type.offset
            m_key, m_value = cached_type.key, cached_type.value
        err = m_error(record)
        if err is not None:
            event(record, err, out)
            continue
        found = m_partition(record)
        partition = 0 if found is None else <long long> found
        found = m_offset(record)
        offset = 0 if found is None else <long long> found
        if partition != cur_partition:
            if cur_partition >= 0:
                ends[cur_partition] = cur_end
            cur_partition = partition
        cur_end = offset + 1
        data += 1
        key = m_key(record)
        known = False
        key_class = None
        if key is not None and PyBytes_GET_SIZE(key) > 0:
            p = <const unsigned char*> PyBytes_AS_STRING(key)
            n = PyBytes_GET_SIZE(key)
            sep = -1
            for i in range(n):
                if p[i] == 47:
                    sep = i
                    break
            if sep > 0:
                if last_prefix is not None and PyBytes_GET_SIZE(last_prefix) == sep \
                        and memcmp(PyBytes_AS_STRING(last_prefix), p, sep) == 0:
                    key_class = last_class
                else:
                    prefix = PyBytes_FromStringAndSize(<const char*> p, sep)
                    hit = PyDict_GetItem(lists, prefix)
                    if hit != NULL:
                        last_prefix, last_class = prefix, <object> hit
                        key_class = last_class
                if key_class is not None and sep + 1 < n and p[sep + 1] == 43 \
                        and _digits(p + sep + 2, n - sep - 2, &number):
                    known = True
            elif sep < 0 and p[0] == 43 and _digits(p + 1, n - 1, &number):
                key_class = ""
                known = True
        if not known:
            parsed = slow_key(record, key, counts, out)
            if parsed is None:
                continue
            key_class, number = parsed[0], <uint64_t> parsed[1]
        value = m_value(record)
        expiry = None
        if value is None:
            target = None
            deletes += 1
        else:
            hit = PyDict_GetItem(cache, value)
            if hit != NULL:
                entry = <object> hit
            else:
                try:
                    entry = read(value)
                except SerdeError as exc:
                    entry = None
                    target = unreadable
                    unread += 1
                    out.dead_letters.append(dead_letter(record, partition, offset, "connector.errors.SerdeError",
                                                        str(exc), "unreadable"))
            if entry is not None:
                name, expiry = entry
                if key_class:
                    target = key_class
                    if not _same(name, key_class):
                        mismatch += 1
                else:
                    target = name or _UNNAMED
                if expiry is not None and expiry <= now_ms:
                    target, expiry = None, None
                    expired += 1
                else:
                    upserts += 1
        if _same(target, run_target) and _same(key_class, run_class) and _same(expiry, run_expiry):
            run.push(number)
            continue
        if run.size:
            ops.append(table_op(run_class or "", run_target, run.take(), run_expiry))
        run_class, run_target, run_expiry = key_class, target, expiry
        run.push(number)
    if run.size:
        ops.append(table_op(run_class or "", run_target, run.take(), run_expiry))
    if cur_partition >= 0:
        ends[cur_partition] = cur_end
    counts["upsert"], counts["delete"] = upserts, deletes
    counts["list_mismatch"] += mismatch
    counts["expired"] += expired
    counts["unreadable"] += unread
    out.counts = counts
    out.records = data
    return out


cdef void _radix_sort(uint64_t* a, uint64_t* tmp, Py_ssize_t n) noexcept nogil:
    """LSD radix sort on 16-bit digits; digits that are the same for all numbers are skipped."""
    cdef uint32_t* counts = <uint32_t*> malloc(65536 * sizeof(uint32_t))
    cdef Py_ssize_t i
    cdef int shift
    cdef uint32_t total, c
    cdef uint64_t* src = a
    cdef uint64_t* dst = tmp
    cdef uint64_t* swap
    if counts == NULL:
        return
    for shift in range(0, 64, 16):
        memset(counts, 0, 65536 * sizeof(uint32_t))
        for i in range(n):
            counts[(src[i] >> shift) & 0xFFFF] += 1
        if counts[(src[0] >> shift) & 0xFFFF] == <uint32_t> n:
            continue  # one digit value for all: already in order for it
        total = 0
        for i in range(65536):
            c = counts[i]
            counts[i] = total
            total += c
        for i in range(n):
            c = (src[i] >> shift) & 0xFFFF
            dst[counts[c]] = src[i]
            counts[c] += 1
        swap = src
        src = dst
        dst = swap
    if src != a:
        memcpy(a, src, n * sizeof(uint64_t))
    free(counts)


def split_sorted(numbers):
    """``{high 32 bits: array('I') of the sorted low 32 bits}`` of E.164 ints (duplicates kept)."""
    cdef array.array values = numbers if isinstance(numbers, array.array) and numbers.typecode == "Q" \
        else _array.array("Q", numbers)
    cdef Py_ssize_t n = len(values), i, j, start
    cdef dict out = {}
    if n == 0:
        return out
    cdef uint64_t* a = <uint64_t*> malloc(n * sizeof(uint64_t))
    cdef uint64_t* tmp = <uint64_t*> malloc(n * sizeof(uint64_t))
    cdef array.array part
    cdef uint32_t* lows
    cdef uint64_t high
    if a == NULL or tmp == NULL:
        free(a)
        free(tmp)
        raise MemoryError()
    try:
        memcpy(a, values.data.as_voidptr, n * sizeof(uint64_t))
        if n > 1:
            with nogil:
                _radix_sort(a, tmp, n)
        start = 0
        while start < n:
            high = a[start] >> 32
            i = start
            while i < n and (a[i] >> 32) == high:
                i += 1
            part = array.clone(_I, i - start, False)
            lows = <uint32_t*> part.data.as_voidptr
            for j in range(start, i):
                lows[j - start] = <uint32_t> (a[j] & 0xFFFFFFFF)
            out[high] = part
            start = i
    finally:
        free(a)
        free(tmp)
    return out
