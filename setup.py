"""The C extensions; everything else is in pyproject.toml.

The decode worker's per-record hot path, compiled with Cython (a build requirement):
``connector/serde/_avro_flat.pyx`` (the Avro reader) and ``connector/core/_record_checks.pyx`` (the
record's bounds and payload size); the DNC bootstrap's, ``connector/core/_dnc_scan.pyx`` (the DNC
records' fast path and the sorted split of a bulk of numbers). All are optional: where no C compiler is found the
install still succeeds and their Python originals run instead (the tests report it unless
``CXONE_ALLOW_PURE_PYTHON=1``).
"""

from setuptools import Extension, setup

setup(ext_modules=[
    Extension("connector.serde._avro_flat", ["connector/serde/_avro_flat.pyx"], optional=True),
    Extension("connector.core._record_checks", ["connector/core/_record_checks.pyx"], optional=True),
    Extension("connector.core._dnc_scan", ["connector/core/_dnc_scan.pyx"], optional=True),
])
