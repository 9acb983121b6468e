"""Benchmarks of STR Search; each module runs with ``python -m benchmarks.<name>``.

Results and the commands that produced them are reported in ``docs/benchmarks.md``.
"""
