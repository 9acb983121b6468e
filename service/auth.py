"""Bearer-token authentication and role checks, as FastAPI dependencies.

A missing or unknown token is ``401`` with ``WWW-Authenticate: Bearer``; a known token whose
role may not use the route is ``403``. Tokens are looked up by their SHA-256 (service.users).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated

from fastapi import Depends, HTTPException, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from service.context import ServicesDep
from service.records import UserRecord
from service.states import Role

bearer = HTTPBearer(
    auto_error=False,
    description="A token made by `strsearch token create` (or STRSEARCH_BOOTSTRAP_TOKEN).",
)


def _unauthorized(detail: str) -> HTTPException:
    return HTTPException(
        status_code=status.HTTP_401_UNAUTHORIZED,
        detail=detail,
        headers={"WWW-Authenticate": "Bearer"},
    )


def current_user(
    services: ServicesDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> UserRecord:
    """The user owning the request's bearer token (``401`` when missing or unknown)."""
    if credentials is None or not credentials.credentials:
        raise _unauthorized("missing bearer token (Authorization: Bearer <token>)")
    user = services.users.authenticate(credentials.credentials)
    if user is None:
        raise _unauthorized("unknown token")
    return user


def require_role(*roles: Role) -> Callable[[UserRecord], UserRecord]:
    """A dependency admitting users with one of ``roles`` (``403`` for the others)."""
    allowed = frozenset(roles)
    names = ", ".join(sorted(role.value for role in allowed))

    def check(user: Annotated[UserRecord, Depends(current_user)]) -> UserRecord:
        if user.role not in allowed:
            raise HTTPException(
                status_code=status.HTTP_403_FORBIDDEN,
                detail=f"role {user.role.value!r} may not use this route (needs: {names})",
            )
        return user

    return check


#: a user or an admin (the job routes)
JobUser = Annotated[UserRecord, Depends(require_role(Role.USER, Role.ADMIN))]
#: a worker (the agent routes)
Worker = Annotated[UserRecord, Depends(require_role(Role.WORKER))]
