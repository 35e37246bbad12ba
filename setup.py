"""The C extension; everything else is in pyproject.toml.

``connector/_avro_flat.pyx`` (the Avro reader's hot path) is compiled with Cython, a build
requirement. It is optional: where no C compiler is found the install still succeeds and
:mod:`connector.avro_reader` runs its generated Python reader instead (``NATIVE`` is False,
and ``tests/unit/test_avro_reader.py`` reports it unless ``CXONE_ALLOW_PURE_PYTHON=1``).
"""

from setuptools import Extension, setup

setup(ext_modules=[Extension("connector._avro_flat", ["connector/_avro_flat.pyx"], optional=True)])
