"""The environment of child processes that run none of the project's code.

Under the test suite, coverage measures every Python subprocess through two variables it sets.
Processes that run only third-party code (a Ray node with its system processes and workers, an
MLflow tracking server) gain nothing from being measured and run markedly slower when they are,
so the code that starts them passes their environment through :func:`without_coverage`.
Outside the tests neither variable is set and this changes nothing.
"""

from __future__ import annotations

from collections.abc import Mapping

#: set by coverage in the processes it measures (and so inherited by their children)
COVERAGE_VARIABLES = ("COVERAGE_PROCESS_CONFIG", "COVERAGE_PROCESS_START")


def without_coverage(env: Mapping[str, str]) -> dict[str, str]:
    """``env`` without the variables that make coverage measure a process and its children."""
    return {k: v for k, v in env.items() if k not in COVERAGE_VARIABLES}
