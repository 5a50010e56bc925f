"""Build hook for the optional C extension; all other metadata is in pyproject.toml.

``core._speedups`` runs the one-handler publish path in C. It is optional: without a
compiler the build goes on and the bus uses the equivalent Python code (core/_native.py).
"""

from setuptools import Extension, setup

setup(
    ext_modules=[Extension("core._speedups", ["core/_speedups.c"], optional=True)],
)
