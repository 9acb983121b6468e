"""Refuse request bodies over the size limit with ``413``, before they are parsed or stored.

Both the declared ``Content-Length`` (answered at once, without reading the body) and the bytes
actually received (a chunked body, or a client that lies about its length) are checked.
"""

from __future__ import annotations

from starlette.exceptions import HTTPException
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send


class BodyTooLarge(HTTPException):
    """The request body is over the limit.

    An ``HTTPException`` so that FastAPI's body parsing lets it through to the JSON error handler.
    """

    def __init__(self, limit: int) -> None:
        super().__init__(status_code=413, detail=f"request body is larger than {limit} bytes")


def _declared_length(scope: Scope) -> int | None:
    for name, value in scope["headers"]:
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


class BodyLimit:
    """ASGI middleware: at most ``max_bytes`` of request body per HTTP request."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Answer ``413`` for a declared oversized body; cut off a streamed one past the limit."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = _declared_length(scope)
        if declared is not None and declared > self.max_bytes:
            error = BodyTooLarge(self.max_bytes)
            response = JSONResponse(
                {"detail": error.detail}, status_code=413, headers={"Connection": "close"}
            )
            await response(scope, receive, send)
            return
        received = 0

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise BodyTooLarge(self.max_bytes)
            return message

        await self.app(scope, limited_receive, send)
