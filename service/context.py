"""What the routes share: the settings, the engine, the store, the users and the metrics.

``create_app`` builds one :class:`Services` per application and keeps it on ``app.state``; the
routes reach it through the :func:`get_services` dependency, so two apps in one process (tests)
never share a store or a metrics registry.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.engine import Engine

from service.metrics import ServiceMetrics
from service.settings import Settings
from service.store import JobStore
from service.users import Users


@dataclass(frozen=True)
class Services:
    """The per-application objects every route may need."""

    settings: Settings
    engine: Engine
    store: JobStore
    users: Users
    metrics: ServiceMetrics


def get_services(request: Request) -> Services:
    """The :class:`Services` of the application serving ``request``."""
    services: Services = request.app.state.services
    return services


#: a route parameter of this type receives the application's :class:`Services`
ServicesDep = Annotated[Services, Depends(get_services)]
