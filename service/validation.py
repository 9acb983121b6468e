"""Checks of request data beyond pydantic's types: registered names, the trial quota, and JSON
that the databases and the JSON encoder can store and send back.

Errors use the shape of FastAPI's validation errors (``loc`` starting with ``"body"``, ``msg``,
``type``), so a client shows every problem of a submission the same way. Values that would
otherwise fail deep in a database driver (a NUL character, which PostgreSQL text cannot hold;
NaN or infinity, which JSON cannot carry; absurdly deep nesting) are refused here with a 4xx, so
such input never becomes a ``500``.
"""

from __future__ import annotations

import math
import re
from typing import Annotated, Any

from fastapi import Depends

from service.errors import NotFound
from strsearch.catalog import check_names
from strsearch.spec import SearchSpec

#: deepest nesting accepted in free-form JSON (progress, result)
MAX_JSON_DEPTH = 32
#: what a job id can look like (the store makes uuid4 hex ids); anything else is a 404
JOB_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")


def json_problem(value: Any, max_depth: int = MAX_JSON_DEPTH) -> tuple[list[str | int], str] | None:
    """The first unstorable part of a JSON-like value, as ``(path, message)``; None when fine."""
    stack: list[tuple[Any, list[str | int]]] = [(value, [])]
    while stack:
        item, path = stack.pop()
        if len(path) > max_depth:
            return path[:max_depth], f"nested deeper than {max_depth} levels"
        if isinstance(item, str):
            if "\x00" in item:
                return path, "contains a NUL character"
        elif isinstance(item, float):
            if not math.isfinite(item):
                return path, "is not a finite number (NaN and infinity are not JSON)"
        elif isinstance(item, dict):
            for key, child in item.items():
                if isinstance(key, str) and "\x00" in key:
                    return path, "has a key with a NUL character"
                stack.append((child, [*path, str(key)]))
        elif isinstance(item, list | tuple):
            stack.extend((child, [*path, index]) for index, child in enumerate(item))
    return None


def storable_json(value: dict[str, Any] | None) -> dict[str, Any] | None:
    """A pydantic after-validator: ``value`` unless :func:`json_problem` finds something."""
    if value is not None and (problem := json_problem(value)) is not None:
        path, message = problem
        where = ".".join(str(part) for part in path)
        raise ValueError(f"{where or 'the value'} {message}")
    return value


def storable_text(value: str | None) -> str | None:
    """A pydantic after-validator for strings: no NUL characters."""
    if value is not None and "\x00" in value:
        raise ValueError("must not contain NUL characters")
    return value


def checked_job_id(job_id: str) -> str:
    """The ``{job_id}`` path parameter; a malformed id is a job that does not exist (``404``)."""
    if not JOB_ID.fullmatch(job_id):
        raise NotFound("job not found")
    return job_id


#: a route parameter of this type is the checked ``{job_id}`` of the path
JobId = Annotated[str, Depends(checked_job_id)]


def submission_errors(spec: SearchSpec, max_trials: int) -> list[dict[str, Any]]:
    """Problems of a valid-looking ``spec`` for a user allowed ``max_trials`` trials per job."""
    errors: list[dict[str, Any]] = []
    problem = json_problem(spec.model_dump())
    if problem is not None:
        path, message = problem
        errors.append({"type": "value_error", "loc": ["body", *path], "msg": message})
    errors.extend(
        {"type": "unknown_name", "loc": ["body", field], "msg": message}
        for field, message in check_names(spec.model, spec.dataset, spec.data_root)
    )
    if spec.trial_budget() > max_trials:
        what = f"search.max_trials is {spec.search.max_trials}"
        if spec.is_comparison:
            what = (
                f"the comparison can run {spec.trial_budget()} trials ({len(spec.methods or ())} "
                f"methods, {len(spec.comparison.seeds)} seeds, search.max_trials "
                f"{spec.search.max_trials} per searched STR method)"
            )
        errors.append(
            {
                "type": "quota",
                "loc": ["body", "search", "max_trials"],
                "msg": f"{what}, over your quota of {max_trials} trials per job",
            }
        )
    return errors
