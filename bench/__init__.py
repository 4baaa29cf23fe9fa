"""The benchmarks, run as scripts (``python bench/operator.py``; see the Makefile's bench targets).

This file makes them the package ``bench`` for mypy (``make lint``), so that ``bench/operator.py``
is the module ``bench.operator``, not a second ``operator`` beside the standard library's.
"""
