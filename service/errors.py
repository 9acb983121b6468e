"""Errors the store raises; the HTTP layer maps them to 404 / 409."""

from __future__ import annotations


class StoreError(Exception):
    """Base of every error the store raises on purpose."""


class NotFound(StoreError):  # noqa: N818 (name fixed by the interface)
    """The job does not exist, or the viewer may not see it (both answer 404)."""


class Conflict(StoreError):  # noqa: N818 (name fixed by the interface)
    """A compare-and-set failed: the job is finished, or the lease is lost; ``str()`` says why."""


class IdempotencyMismatch(Conflict):
    """The same idempotency key was sent again with a different body."""
