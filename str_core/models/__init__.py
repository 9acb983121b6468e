"""Model registry and the built-in models.

Each model module is imported here explicitly; importing it runs its ``@register_model``
decorators, so the set of built-in models is exactly the list below. Third-party models come
through the ``strsearch.models`` entry-point group (see :mod:`str_core.models._registry`).
"""

from str_core.models import mobilenet, resnet, resnet_cifar, small
from str_core.models._registry import (
    ENTRY_POINT_GROUP,
    ModelInfo,
    create_model,
    get_model_info,
    list_models,
    register_model,
)

__all__ = [
    "ENTRY_POINT_GROUP",
    "ModelInfo",
    "create_model",
    "get_model_info",
    "list_models",
    "mobilenet",
    "register_model",
    "resnet",
    "resnet_cifar",
    "small",
]
