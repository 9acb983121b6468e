"""The model registry: ``@register_model`` builders and ``create_model(name, ...)``.

Every model is a dense PyTorch module built by a *builder* function. ``create_model`` builds it
and, when given an :class:`~str_core.config.STRConfig`, converts it with
:func:`str_core.layers.sparsify`, so one definition serves both the dense baseline and STR
(Kusupati et al., ICML 2020, arXiv 2002.03231).

Built-in models register when :mod:`str_core.models` imports their modules. Third-party packages
add models without forking this project through the entry-point group ``strsearch.models``::

    [project.entry-points."strsearch.models"]
    my_net = "my_pkg.models:my_net"

The entry point loads either a :class:`ModelInfo` (registered as is) or a builder already
decorated with :func:`register_model` (loading its module registered it). All entry points of the
group are loaded once, on the first lookup.
"""

from __future__ import annotations

import importlib.metadata
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from torch import nn

from str_core.config import STRConfig
from str_core.layers import sparsify

ENTRY_POINT_GROUP = "strsearch.models"
"""Entry-point group through which installed packages contribute models."""

BuilderT = TypeVar("BuilderT", bound=Callable[..., nn.Module])


@dataclass(frozen=True)
class ModelInfo:
    """A registered model.

    Attributes:
        name: registry key.
        builder: returns the dense model; takes at least the keyword arguments ``num_classes``
            and ``in_channels``.
        input_shape: shape of one example without the batch dimension, e.g. ``(3, 224, 224)``.
        num_classes: default number of outputs.
        description: one line, by default the first line of the builder's docstring.
    """

    name: str
    builder: Callable[..., nn.Module]
    input_shape: tuple[int, ...]
    num_classes: int
    description: str = ""


_MODELS: dict[str, ModelInfo] = {}
_entry_points_loaded = False


def _register(info: ModelInfo) -> None:
    if info.name in _MODELS:
        raise ValueError(f"model {info.name!r} is already registered")
    _MODELS[info.name] = info


def register_model(
    *, input_shape: tuple[int, ...], num_classes: int, name: str | None = None
) -> Callable[[BuilderT], BuilderT]:
    """Decorator that registers a model builder.

    Args:
        input_shape: shape of one example without the batch dimension, e.g. ``(1, 8, 8)``.
        num_classes: default number of classes.
        name: registry key; defaults to the builder's ``__name__``.

    Returns:
        A decorator that registers the builder and returns it unchanged.

    Raises:
        ValueError: (from the decorator) if the name is already registered.
    """

    def decorator(builder: BuilderT) -> BuilderT:
        doc = (builder.__doc__ or "").strip()
        _register(
            ModelInfo(
                name=name or builder.__name__,
                builder=builder,
                input_shape=tuple(input_shape),
                num_classes=num_classes,
                description=doc.splitlines()[0] if doc else "",
            )
        )
        return builder

    return decorator


def _is_registered_builder(obj: object) -> bool:
    return any(info.builder is obj for info in _MODELS.values())


def _load_entry_point(ep: importlib.metadata.EntryPoint) -> None:
    label = f"{ep.name} = {ep.value}"
    try:
        obj = ep.load()
    except Exception as e:
        raise RuntimeError(
            f"cannot load model entry point {label!r} (group {ENTRY_POINT_GROUP!r}): {e}"
        ) from e
    if isinstance(obj, ModelInfo):
        if _MODELS.get(obj.name) != obj:  # the same info twice (a retried load) is fine
            try:
                _register(obj)
            except ValueError as e:
                raise ValueError(f"model entry point {label!r}: {e}") from e
    elif not _is_registered_builder(obj):
        raise TypeError(
            f"model entry point {label!r} (group {ENTRY_POINT_GROUP!r}) must load a ModelInfo "
            f"or a builder decorated with @register_model; got {obj!r}"
        )


def _load_entry_points() -> None:
    """Load every ``strsearch.models`` entry point once.

    A failure leaves the registry marked as not loaded, so the next lookup raises again rather
    than silently missing the plugin's models.
    """
    global _entry_points_loaded  # noqa: PLW0603 - a load-once flag is the whole point
    if _entry_points_loaded:
        return
    _entry_points_loaded = True
    try:
        for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
            _load_entry_point(ep)
    except Exception:
        _entry_points_loaded = False
        raise


def list_models() -> list[str]:
    """Names of every registered model (built-in and entry-point plugins), sorted."""
    _load_entry_points()
    return sorted(_MODELS)


def get_model_info(name: str) -> ModelInfo:
    """The :class:`ModelInfo` registered under ``name``.

    Raises:
        KeyError: for an unknown name; the message lists the valid names.
    """
    _load_entry_points()
    try:
        return _MODELS[name]
    except KeyError:
        valid = ", ".join(sorted(_MODELS))
        raise KeyError(f"unknown model {name!r}; valid models: {valid}") from None


def create_model(
    name: str,
    *,
    num_classes: int | None = None,
    in_channels: int | None = None,
    str_config: STRConfig | None = None,
    **kwargs: Any,
) -> nn.Module:
    """Build a registered model, dense or STR.

    Args:
        name: a name from :func:`list_models`.
        num_classes: number of outputs; defaults to the registered ``num_classes``.
        in_channels: input channels; defaults to ``input_shape[0]`` of the registration.
        str_config: when given, every prunable layer (minus ``str_config.exclude``) is replaced
            by its STR version with :func:`str_core.layers.sparsify`.
        **kwargs: passed on to the builder (e.g. ``zero_init_residual=True`` for ResNets).

    Returns:
        The model, in training mode.

    Raises:
        KeyError: for an unknown name; the message lists the valid names.
    """
    info = get_model_info(name)
    model = info.builder(
        num_classes=info.num_classes if num_classes is None else num_classes,
        in_channels=info.input_shape[0] if in_channels is None else in_channels,
        **kwargs,
    )
    if str_config is not None:
        sparsify(model, str_config)
    return model
