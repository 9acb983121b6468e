"""How errors become HTTP answers: always JSON, never a traceback.

- validation errors: ``422`` with ``detail`` a list of ``{type, loc, msg}`` (``loc`` names the
  field: ``["body", "search", "max_trials"]``, ``["header", "idempotency-key"]``, ...); a body
  that is not JSON is ``422`` naming ``["body"]``;
- store errors: ``NotFound`` -> ``404``, ``Conflict`` -> ``409`` with its message;
- a database that does not answer: ``503`` with ``Retry-After`` (clients retry);
- anything else: ``500 {"detail": "internal error"}``, logged with its traceback.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exception_handlers import http_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from sqlalchemy.exc import InterfaceError, OperationalError
from starlette.exceptions import HTTPException

from service.errors import Conflict, NotFound

log = logging.getLogger(__name__)


NOT_JSON = "the body is not valid JSON"


def _clean(error: Any) -> dict[str, Any]:
    """One validation error without its echoed input or non-JSON context.

    A JSON syntax error names the body (``["body"]``) and gives the position in its message.
    """
    loc = [part if isinstance(part, int) else str(part) for part in error.get("loc", ())]
    message = str(error.get("msg", "invalid"))
    if error.get("type") == "json_invalid":
        context = error.get("ctx") or {}
        where = f" at character {loc[1]}" if len(loc) > 1 else ""
        message = f"{NOT_JSON}: {context.get('error', 'decode error')}{where}"
        loc = loc[:1]
    return {"type": str(error.get("type", "value_error")), "loc": loc, "msg": message}


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    return JSONResponse({"detail": [_clean(error) for error in exc.errors()]}, status_code=422)


async def _http_error(request: Request, exc: Exception) -> Response:
    """FastAPI's JSON answer, except that a body it could not parse is a 422 naming ``body``.

    FastAPI answers ``400`` (with the parse error as the cause) for bodies that ``json.loads``
    rejects with something else than a syntax error: bytes that are not UTF-8, nesting too deep
    for the parser, an integer too long to convert.
    """
    assert isinstance(exc, HTTPException)
    if exc.status_code == 400 and exc.__cause__ is not None:
        detail = [{"type": "json_invalid", "loc": ["body"], "msg": f"{NOT_JSON}: unreadable"}]
        return JSONResponse({"detail": detail}, status_code=422)
    return await http_exception_handler(request, exc)


async def _not_found(request: Request, exc: Exception) -> JSONResponse:
    return JSONResponse({"detail": str(exc) or "not found"}, status_code=404)


async def _conflict(request: Request, exc: Exception) -> JSONResponse:
    return JSONResponse({"detail": str(exc) or "conflict"}, status_code=409)


async def _database_unavailable(request: Request, exc: Exception) -> JSONResponse:
    log.warning("database error on %s %s", request.method, request.url.path, exc_info=exc)
    return JSONResponse(
        {"detail": "the database is unavailable; retry later"},
        status_code=503,
        headers={"Retry-After": "1"},
    )


async def _internal_error(request: Request, exc: Exception) -> JSONResponse:
    log.error("unexpected error on %s %s", request.method, request.url.path, exc_info=exc)
    return JSONResponse({"detail": "internal error"}, status_code=500)


def install_error_handlers(app: FastAPI) -> None:
    """Register the handlers above on ``app``."""
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(HTTPException, _http_error)
    app.add_exception_handler(NotFound, _not_found)
    app.add_exception_handler(Conflict, _conflict)
    app.add_exception_handler(OperationalError, _database_unavailable)
    app.add_exception_handler(InterfaceError, _database_unavailable)
    app.add_exception_handler(Exception, _internal_error)
