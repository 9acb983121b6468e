"""The model registry: lookup errors, duplicates, STR conversion and entry-point plugins."""

from __future__ import annotations

import importlib.metadata
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

from str_core.config import STRConfig
from str_core.layers import STR_LAYER_TYPES, STRLinear, STRMixin, prunable_layers
from str_core.models import (
    ENTRY_POINT_GROUP,
    ModelInfo,
    _registry,
    create_model,
    get_model_info,
    list_models,
    register_model,
)

BUILT_IN = {
    "digits_cnn",
    "digits_mlp",
    "mnist1d_cnn",
    "mnist1d_mlp",
    "mobilenet_v1",
    "resnet18",
    "resnet18_cifar",
    "resnet20",
    "resnet50",
    "resnet50_cifar",
}


@pytest.fixture
def registry(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, ModelInfo]]:
    """A private copy of the registry, with entry points not yet loaded; undone afterwards."""
    models = dict(_registry._MODELS)
    monkeypatch.setattr(_registry, "_MODELS", models)
    monkeypatch.setattr(_registry, "_entry_points_loaded", False)
    yield models
    for name in [m for m in sys.modules if m.startswith("xyz_")]:
        del sys.modules[name]


def _tiny(*, num_classes: int, in_channels: int) -> nn.Module:
    return nn.Sequential(nn.Flatten(), nn.Linear(in_channels * 4, num_classes))


def test_built_in_models_are_registered() -> None:
    assert set(list_models()) >= BUILT_IN
    assert list_models() == sorted(list_models())


def test_unknown_name_raises_key_error_listing_valid_names() -> None:
    with pytest.raises(KeyError, match="resnet5O") as info:
        create_model("resnet5O")
    message = str(info.value)
    for name in BUILT_IN:
        assert name in message
    with pytest.raises(KeyError, match="digits_cnn"):
        get_model_info("nope")


def test_duplicate_name_raises(registry: dict[str, ModelInfo]) -> None:
    with pytest.raises(ValueError, match="already registered"):
        register_model(input_shape=(1, 8, 8), num_classes=10, name="digits_cnn")(_tiny)
    register_model(input_shape=(1, 4), num_classes=2, name="tiny")(_tiny)
    with pytest.raises(ValueError, match="'tiny' is already registered"):
        register_model(input_shape=(1, 4), num_classes=2, name="tiny")(_tiny)


def test_register_model_records_info_and_returns_builder(registry: dict[str, ModelInfo]) -> None:
    def tiny_net(*, num_classes: int, in_channels: int) -> nn.Module:
        """A tiny net.

        More text that is not part of the description.
        """
        return _tiny(num_classes=num_classes, in_channels=in_channels)

    assert register_model(input_shape=[2, 4], num_classes=5)(tiny_net) is tiny_net  # type: ignore[arg-type]
    info = get_model_info("tiny_net")
    assert info == ModelInfo("tiny_net", tiny_net, (2, 4), 5, "A tiny net.")
    assert "tiny_net" in list_models()


def test_create_model_defaults_and_overrides(registry: dict[str, ModelInfo]) -> None:
    seen: list[dict[str, Any]] = []

    def spy(**kwargs: Any) -> nn.Module:
        seen.append(kwargs)
        return _tiny(num_classes=kwargs["num_classes"], in_channels=kwargs["in_channels"])

    register_model(input_shape=(3, 4), num_classes=7, name="spy")(spy)
    create_model("spy")
    create_model("spy", num_classes=2, in_channels=5, extra=True)
    assert seen == [
        {"num_classes": 7, "in_channels": 3},
        {"num_classes": 2, "in_channels": 5, "extra": True},
    ]


def test_builder_kwargs_reach_the_model() -> None:
    model = create_model("resnet20", num_classes=4, in_channels=1)
    assert model(torch.randn(2, 1, 32, 32)).shape == (2, 4)
    with pytest.raises(TypeError):
        create_model("resnet20", no_such_option=1)


@pytest.mark.parametrize("name", ["digits_cnn", "mnist1d_cnn", "resnet20", "mobilenet_v1"])
def test_create_model_with_str_config_converts_every_prunable_layer(name: str) -> None:
    dense = create_model(name)
    assert not any(isinstance(m, STR_LAYER_TYPES) for _, m in prunable_layers(dense))
    model = create_model(name, str_config=STRConfig(s_init=-7.0, granularity="channel"))
    layers = prunable_layers(model)
    assert [n for n, _ in layers] == [n for n, _ in prunable_layers(dense)]
    for layer_name, layer in layers:
        assert isinstance(layer, STR_LAYER_TYPES), layer_name
        assert isinstance(layer, STRMixin)
        assert torch.all(layer.s == -7.0)
        assert layer.s.shape[0] == layer.weight.shape[0]


def test_create_model_str_config_exclude_keeps_named_layers_dense() -> None:
    model = create_model("digits_cnn", str_config=STRConfig(exclude=("features.0.conv", "fc")))
    kinds = {n: isinstance(m, STR_LAYER_TYPES) for n, m in prunable_layers(model)}
    assert kinds == {
        "features.0.conv": False,
        "features.1.conv": True,
        "features.3.conv": True,
        "fc": False,
    }


# --- third-party models through the ``strsearch.models`` entry-point group -------------------


def _install_plugin(
    monkeypatch: pytest.MonkeyPatch, root: Path, dist: str, entries: str, modules: dict[str, str]
) -> None:
    """Make ``root`` look like site-packages holding the distribution ``dist``."""
    info = root / f"{dist}-0.1.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(f"[{ENTRY_POINT_GROUP}]\n{entries}\n")
    for module, source in modules.items():
        (root / f"{module}.py").write_text(source)
    monkeypatch.syspath_prepend(str(root))


_DECORATED_PLUGIN = '''
from torch import nn
from str_core.models import register_model


@register_model(input_shape=(1, 6), num_classes=3)
def xyz_plugin_mlp(*, num_classes, in_channels, hidden=8):
    """A model that lives outside str_core."""
    return nn.Sequential(
        nn.Flatten(), nn.Linear(in_channels * 6, hidden), nn.ReLU(), nn.Linear(hidden, num_classes)
    )
'''

_INFO_PLUGIN = """
from torch import nn
from str_core.models import ModelInfo


def _build(*, num_classes, in_channels):
    return nn.Sequential(nn.Flatten(), nn.Linear(in_channels * 5, num_classes))


INFO = ModelInfo("xyz_info_net", _build, (1, 5), 2, "Registered as a ModelInfo")
"""


def test_entry_point_with_decorated_builder_is_found(
    registry: dict[str, ModelInfo], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    _install_plugin(
        monkeypatch,
        tmp_path,
        "xyz_plugin",
        "xyz_plugin_mlp = xyz_plugin_models:xyz_plugin_mlp",
        {"xyz_plugin_models": _DECORATED_PLUGIN},
    )
    assert "xyz_plugin_mlp" not in registry  # nothing is loaded until the first lookup
    model = create_model("xyz_plugin_mlp", hidden=4)
    assert model(torch.randn(2, 1, 6)).shape == (2, 3)
    hidden = model.get_submodule("1")
    assert isinstance(hidden, nn.Linear)
    assert hidden.out_features == 4
    assert get_model_info("xyz_plugin_mlp").description == "A model that lives outside str_core."
    assert "xyz_plugin_mlp" in list_models()
    sparse = create_model("xyz_plugin_mlp", str_config=STRConfig())
    assert all(isinstance(m, STRLinear) for _, m in prunable_layers(sparse))


def test_entry_point_with_model_info_is_found(
    registry: dict[str, ModelInfo], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    _install_plugin(
        monkeypatch,
        tmp_path,
        "xyz_info",
        "xyz_info_net = xyz_info_models:INFO",
        {"xyz_info_models": _INFO_PLUGIN},
    )
    assert create_model("xyz_info_net")(torch.randn(3, 1, 5)).shape == (3, 2)
    assert get_model_info("xyz_info_net").description == "Registered as a ModelInfo"


def test_entry_points_are_loaded_once(
    registry: dict[str, ModelInfo], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    _install_plugin(
        monkeypatch,
        tmp_path,
        "xyz_once",
        "xyz_info_net = xyz_once_models:INFO",
        {"xyz_once_models": _INFO_PLUGIN},
    )
    calls: list[str] = []
    real = importlib.metadata.entry_points

    def counting(**kwargs: Any) -> Any:
        calls.append(kwargs["group"])
        return real(**kwargs)

    monkeypatch.setattr(importlib.metadata, "entry_points", counting)
    list_models()
    get_model_info("xyz_info_net")
    create_model("digits_mlp")
    assert calls == [ENTRY_POINT_GROUP]


def test_broken_entry_point_names_itself_and_keeps_failing(
    registry: dict[str, ModelInfo], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    _install_plugin(
        monkeypatch, tmp_path, "xyz_broken", "xyz_broken_net = xyz_missing_module:build", {}
    )
    for _ in range(2):  # a failed load is retried, so the error never turns into silence
        with pytest.raises(RuntimeError, match="xyz_broken_net = xyz_missing_module:build"):
            create_model("digits_cnn")


def test_entry_point_that_is_not_registered_is_rejected(
    registry: dict[str, ModelInfo], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    source = "def build(*, num_classes, in_channels):\n    raise AssertionError\n"
    _install_plugin(
        monkeypatch,
        tmp_path,
        "xyz_plain",
        "xyz_plain_net = xyz_plain_models:build",
        {"xyz_plain_models": source},
    )
    with pytest.raises(
        TypeError, match=r"'xyz_plain_net = xyz_plain_models:build'.*register_model"
    ):
        list_models()


def test_entry_point_clashing_with_a_built_in_name_raises(
    registry: dict[str, ModelInfo], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    source = _INFO_PLUGIN.replace('"xyz_info_net"', '"resnet50"')
    _install_plugin(
        monkeypatch,
        tmp_path,
        "xyz_clash",
        "resnet50 = xyz_clash_models:INFO",
        {"xyz_clash_models": source},
    )
    with pytest.raises(ValueError, match=r"'resnet50 = xyz_clash_models:INFO'.*already registered"):
        get_model_info("resnet50")
