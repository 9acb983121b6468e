"""The service's settings, read once from the environment at start-up.

One frozen dataclass so the app, the store and the tests share the same knobs; ``from_env``
parses the ``STRSEARCH_*`` variables and names the variable in the error when a value is bad,
so a misconfigured deployment fails at start-up with a message an operator can act on.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TypeVar

T = TypeVar("T")

PREFIX = "STRSEARCH_"


def _parse(environ: Mapping[str, str], name: str, convert: Callable[[str], T], default: T) -> T:
    """Convert ``environ[PREFIX + name]`` or return the default; ValueError names the variable."""
    key = PREFIX + name
    raw = environ.get(key)
    if raw is None or raw.strip() == "":
        return default
    try:
        return convert(raw.strip())
    except ValueError as exc:
        raise ValueError(f"{key}={raw!r} is not valid: {exc}") from None


def _positive_float(raw: str) -> float:
    value = float(raw)
    if not value > 0 or value == float("inf"):
        raise ValueError("must be a positive finite number")
    return value


def _positive_int(raw: str) -> int:
    value = int(raw)
    if value < 1:
        raise ValueError("must be an integer >= 1")
    return value


@dataclass(frozen=True)
class Settings:
    """Everything the service reads from its environment (see docs/api.md, "Settings")."""

    database_url: str = "sqlite:///runs/service/service.db"
    lease_seconds: float = 60.0
    max_attempts: int = 3
    max_trials: int = 100
    max_body_bytes: int = 65536
    bootstrap_token: str | None = None
    worker_token: str | None = None

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> Settings:
        """Read ``STRSEARCH_*`` variables; unset or empty ones keep the defaults."""
        default = cls()
        token = environ.get(PREFIX + "BOOTSTRAP_TOKEN", "").strip() or None
        worker_token = environ.get(PREFIX + "WORKER_TOKEN", "").strip() or None
        return cls(
            database_url=_parse(environ, "DATABASE_URL", str, default.database_url),
            lease_seconds=_parse(environ, "LEASE_SECONDS", _positive_float, default.lease_seconds),
            max_attempts=_parse(environ, "MAX_ATTEMPTS", _positive_int, default.max_attempts),
            max_trials=_parse(environ, "MAX_TRIALS", _positive_int, default.max_trials),
            max_body_bytes=_parse(environ, "MAX_BODY_BYTES", _positive_int, default.max_body_bytes),
            bootstrap_token=token,
            worker_token=worker_token,
        )
