# cython: language_level=3, boundscheck=False, wraparound=False
"""C twins of the decoder's two per-record checks, built with the Avro reader's extension.

- :class:`Validator` is :func:`connector.pipeline.decoding.validate_record` (the same answers, the
  same messages);
- :class:`PayloadSize` is :func:`connector.core.windowing.item_payload_bytes`.

Both Python functions stay the reference and the fallback where the extension was not built;
``tests/unit/test_record_checks.py`` checks that each twin answers as its Python original for
arbitrary input. The worker runs them for every record: in Python they took ~1.3 and ~1.5 µs.
"""

from cpython.unicode cimport PyUnicode_GET_LENGTH


cdef extern from "Python.h":
    bint PyUnicode_IS_ASCII(object text)


cdef class Validator:
    """``validator(key, record)``: None when the record is acceptable, else the reason.

    Args:
        string_fields: ``(name, limit)`` per string field, in the order they are checked.
        max_key_bytes: the record key's bound.
        custom_fields: the entry-count bound of ``custom_fields``.
        custom_field_key: the bound of each key.
        custom_field_value: the bound of each value.
        changed_at_range: the inclusive ``(low, high)`` of ``changed_at``.
    """

    cdef tuple _strings
    cdef Py_ssize_t _max_key, _max_custom, _max_custom_key, _max_custom_value
    cdef object _low, _high

    def __init__(self, string_fields, Py_ssize_t max_key_bytes, Py_ssize_t custom_fields,
                 Py_ssize_t custom_field_key, Py_ssize_t custom_field_value, changed_at_range):
        self._strings = tuple((str(name), int(limit)) for name, limit in string_fields)
        self._max_key = max_key_bytes
        self._max_custom = custom_fields
        self._max_custom_key = custom_field_key
        self._max_custom_value = custom_field_value
        self._low, self._high = changed_at_range

    def __call__(self, key, record):
        if not key:
            return "empty key"
        if len(key) > self._max_key:
            return f"key longer than {self._max_key} bytes"
        get = record.get
        if not get("contact_id"):
            return "empty contact_id"
        if not get("event_id"):
            return "empty event_id"
        cdef Py_ssize_t limit
        for name, limit in self._strings:
            value = get(name)
            if value is not None and len(value) > limit:
                return f"{name} longer than {limit} characters ({len(value)})"
        changed_at = get("changed_at")
        if isinstance(changed_at, int) and not self._low <= changed_at <= self._high:
            return "changed_at outside years 1 to 9999"
        fields = get("custom_fields") or {}
        if len(fields) > self._max_custom:
            return f"more than {self._max_custom} custom_fields ({len(fields)})"
        for name, value in fields.items():
            if len(name) > self._max_custom_key:
                return f"a custom_fields key longer than {self._max_custom_key} characters"
            if len(value) > self._max_custom_value:
                return f"custom_fields value longer than {self._max_custom_value} characters"
        return None


cdef inline bint _plain(str text):
    """ASCII, printable, no quote or backslash: JSON writes it as it is, in quotes."""
    if not PyUnicode_IS_ASCII(text):
        return False
    cdef Py_UCS4 ch
    for ch in text:
        if ch < 0x20 or ch > 0x7E or ch == 0x22 or ch == 0x5C:
            return False
    return True


cdef class PayloadSize:
    """``size(phone, first_name, last_name, email, custom_fields, source_system, time_zone="")``:
    the bytes one contact adds to a ``v2`` body, as ``connector.core.windowing.item_payload_bytes``
    counts (a ``timeZone`` custom field when ``time_zone`` is set and the CRM sent none).

    Args:
        item_fixed: the item's bytes besides its strings and custom fields.
        opt_in_date: the date the size model counts for an added ``optInDate``.
        json_str_len: the Python measure of one JSON string (for text that is not plain).
    """

    cdef Py_ssize_t _fixed
    cdef str _date
    cdef object _json_len

    def __init__(self, Py_ssize_t item_fixed, str opt_in_date, json_str_len):
        self._fixed = item_fixed
        self._date = opt_in_date
        self._json_len = json_str_len

    cdef Py_ssize_t _one(self, object value) except -1:
        if value is None:
            return 4
        if _plain(value):
            return PyUnicode_GET_LENGTH(value) + 2
        return self._json_len(value)

    def __call__(self, str phone, first_name, last_name, email, dict custom_fields, str source_system,
                 str time_zone=""):
        cdef Py_ssize_t size = self._fixed + 2
        cdef Py_ssize_t pairs = len(custom_fields)
        size += self._one(phone) + self._one(first_name) + self._one(last_name) + self._one(email)
        for key, value in custom_fields.items():
            size += self._one(key) + self._one(value)
        if "source" not in custom_fields:
            size += 8 + self._one(source_system)
            pairs += 1
        if "optInDate" not in custom_fields:
            size += 11 + self._one(self._date)
            pairs += 1
        if time_zone and "timeZone" not in custom_fields:
            size += 10 + self._one(time_zone)
            pairs += 1
        return size + 4 * pairs - 2
