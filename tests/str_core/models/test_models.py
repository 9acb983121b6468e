"""Every registered model, dense and STR, plus the architecture facts of the built-in models."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from str_core.config import STRConfig
from str_core.layers import STR_LAYER_TYPES, STRMixin, prunable_layers
from str_core.models import create_model, get_model_info, list_models
from str_core.models.mobilenet import MobileNetV1
from str_core.models.resnet import ResNet


def _input_shape(name: str) -> tuple[int, ...]:
    """A smaller image than registered, to keep the suite fast: 224 -> 64, 32 -> 16.

    Image models pool adaptively, and these sizes still leave a 2x2 (ImageNet stem) or larger
    map at the last stage, so every layer and BN sees more than one value per channel.
    """
    shape = get_model_info(name).input_shape
    if len(shape) == 3 and shape[1] >= 32:
        side = min(64, shape[1] // 2)
        return (shape[0], side, side)
    return shape


Prunable = nn.Conv1d | nn.Conv2d | nn.Linear


def _prunable(model: nn.Module) -> list[tuple[str, Prunable]]:
    layers = prunable_layers(model)
    assert all(isinstance(m, Prunable) for _, m in layers)
    return layers  # type: ignore[return-value]


def _weight_count(model: nn.Module) -> int:
    return sum(m.weight.numel() for _, m in _prunable(model))


def _conv(model: nn.Module, name: str) -> nn.Conv2d:
    conv = model.get_submodule(name)
    assert isinstance(conv, nn.Conv2d)
    return conv


def _gamma(model: nn.Module, name: str) -> torch.Tensor:
    bn = model.get_submodule(name)
    assert isinstance(bn, nn.BatchNorm2d)
    return bn.weight


@pytest.mark.parametrize("variant", ["dense", "str"])
@pytest.mark.parametrize("name", list_models())
def test_forward_backward_reaches_every_parameter(name: str, variant: str) -> None:
    torch.manual_seed(0)
    str_config = STRConfig(s_init=-5.0) if variant == "str" else None
    model = create_model(name, str_config=str_config)
    num_classes = get_model_info(name).num_classes
    x = torch.randn(2, *_input_shape(name))

    out = model(x)
    assert out.shape == (2, num_classes)
    assert torch.isfinite(out).all()
    out.square().mean().backward()

    for param_name, param in model.named_parameters():
        assert param.grad is not None, f"{param_name} got no gradient"
        assert torch.isfinite(param.grad).all(), f"{param_name} has a non-finite gradient"
    if variant == "str":
        layers = prunable_layers(model)
        assert layers
        pruned = total = 0
        for layer_name, layer in layers:
            assert isinstance(layer, STR_LAYER_TYPES), layer_name
            assert isinstance(layer, STRMixin)
            assert layer.s.grad is not None
            assert layer.s.grad.abs().sum() > 0, f"{layer_name}: threshold has a zero gradient"
            with torch.no_grad():
                zeros = int((layer.sparse_weight() == 0).sum())
            assert zeros < layer.weight.numel(), f"{layer_name} is pruned away"
            pruned, total = pruned + zeros, total + layer.weight.numel()
        assert 0 < pruned < total  # thresholds are active but not everything is pruned


def _resnet50_names() -> list[str]:
    names = ["conv1"]
    for stage, blocks in enumerate([3, 4, 6, 3], start=1):
        for block in range(blocks):
            prefix = f"layer{stage}.{block}"
            names += [f"{prefix}.conv1", f"{prefix}.conv2", f"{prefix}.conv3"]
            if block == 0:
                names.append(f"{prefix}.downsample.0")
    return [*names, "fc"]


@pytest.mark.parametrize("name", ["resnet50", "resnet50_cifar"])
def test_resnet50_prunable_layers_follow_torchvision_names(name: str) -> None:
    model = create_model(name)
    expected = _resnet50_names()
    assert len(expected) == 54
    assert [n for n, _ in prunable_layers(model)] == expected


def test_resnet50_counts_and_torchvision_layout() -> None:
    model = create_model("resnet50")
    assert isinstance(model, ResNet)
    assert _weight_count(model) == 25_502_912
    assert sum(p.numel() for p in model.parameters()) == 25_557_032  # torchvision's count
    assert len(model.state_dict()) == 320  # as many keys as torchvision's state_dict
    assert _conv(model, "layer2.0.conv1").stride == (1, 1)  # v1.5: the 3x3 conv strides
    assert _conv(model, "layer2.0.conv2").stride == (2, 2)
    assert _conv(model, "layer2.0.downsample.0").stride == (2, 2)
    assert isinstance(model.get_submodule("layer2.0.downsample.1"), nn.BatchNorm2d)
    assert isinstance(model.avgpool, nn.AdaptiveAvgPool2d)
    assert isinstance(model.maxpool, nn.MaxPool2d)
    assert model.conv1.kernel_size == (7, 7)
    assert model.conv1.stride == (2, 2)
    assert all(m.bias is None for _, m in _prunable(model) if isinstance(m, nn.Conv2d))
    assert (model.fc.in_features, model.fc.out_features) == (2048, 1000)


def test_resnet18_counts_and_names() -> None:
    model = create_model("resnet18")
    assert _weight_count(model) == 11_678_912
    assert sum(p.numel() for p in model.parameters()) == 11_689_512  # torchvision's count
    assert len(model.state_dict()) == 122  # as many keys as torchvision's state_dict
    names = [n for n, _ in prunable_layers(model)]
    assert len(names) == 21
    assert names[:4] == ["conv1", "layer1.0.conv1", "layer1.0.conv2", "layer1.1.conv1"]
    assert "layer2.0.downsample.0" in names
    assert "layer1.0.downsample.0" not in names
    assert names[-1] == "fc"


@pytest.mark.parametrize("name", ["resnet18_cifar", "resnet50_cifar"])
def test_cifar_stem_keeps_resolution(name: str) -> None:
    model = create_model(name)
    assert isinstance(model, ResNet)
    assert isinstance(model.maxpool, nn.Identity)
    assert model.conv1.kernel_size == (3, 3)
    assert model.conv1.stride == (1, 1)
    stem = model.maxpool(model.relu(model.bn1(model.conv1(torch.randn(1, 3, 32, 32)))))
    assert stem.shape == (1, 64, 32, 32)


def test_resnet_init_and_zero_init_residual() -> None:
    torch.manual_seed(0)
    model = create_model("resnet50")
    conv = _conv(model, "layer3.0.conv3")  # 1x1, 256 -> 1024: fan_out = 1024
    assert abs(conv.weight.std().item() - (2 / 1024) ** 0.5) < 2e-3
    assert torch.all(_gamma(model, "layer1.0.bn3") == 1)
    zeroed = create_model("resnet50", zero_init_residual=True)
    assert torch.all(_gamma(zeroed, "layer1.0.bn3") == 0)
    assert torch.all(_gamma(zeroed, "layer1.0.bn2") == 1)
    basic = create_model("resnet18", zero_init_residual=True)
    assert torch.all(_gamma(basic, "layer4.1.bn2") == 0)
    assert torch.all(_gamma(basic, "layer4.1.bn1") == 1)


def test_resnet20_layout() -> None:
    model = create_model("resnet20")
    names = [n for n, _ in prunable_layers(model)]
    assert len(names) == 22  # 19 3x3 convs + 2 projection shortcuts + fc
    assert [n for n in names if "downsample" in n] == [
        "layer2.0.downsample.0",
        "layer3.0.downsample.0",
    ]
    widths = [_conv(model, f"layer{i}.2.conv2").out_channels for i in (1, 2, 3)]
    assert widths == [16, 32, 64]
    assert _weight_count(model) == 270_896
    assert sum(p.numel() for p in model.parameters()) == 272_474


def test_mobilenet_v1_counts_and_names() -> None:
    model = create_model("mobilenet_v1")
    assert isinstance(model, MobileNetV1)
    assert _weight_count(model) == 4_209_088
    assert model.fc.weight.numel() == 1_024_000
    names = [n for n, _ in prunable_layers(model)]
    expected = ["features.0.conv"]
    for i in range(1, 14):
        expected += [f"features.{i}.depthwise.conv", f"features.{i}.pointwise.conv"]
    assert names == [*expected, "fc"]
    depthwise = [_conv(model, f"features.{i}.depthwise.conv") for i in range(1, 14)]
    assert [dw.stride[0] for dw in depthwise] == [1, 2, 1, 2, 1, 2, 1, 1, 1, 1, 1, 2, 1]
    assert all(dw.groups == dw.in_channels == dw.out_channels for dw in depthwise)
    assert _conv(model, "features.0.conv").stride == (2, 2)
    assert all(m.bias is None for _, m in _prunable(model) if isinstance(m, nn.Conv2d))


def test_mobilenet_v1_width_multiplier() -> None:
    model = create_model("mobilenet_v1", width_mult=0.5, num_classes=10)
    assert isinstance(model, MobileNetV1)
    assert _conv(model, "features.0.conv").out_channels == 16
    assert model.fc.in_features == 512
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 10)
    with pytest.raises(ValueError, match="width_mult"):
        create_model("mobilenet_v1", width_mult=0.0)


def test_small_model_sizes() -> None:
    counts = {name: _weight_count(create_model(name)) for name in ("digits_cnn", "mnist1d_cnn")}
    assert counts == {"digits_cnn": 93_728, "mnist1d_cnn": 37_280}
    shapes = {
        name: [tuple(m.weight.shape) for _, m in _prunable(create_model(name))]
        for name in ("digits_mlp", "mnist1d_mlp")
    }
    assert shapes == {
        "digits_mlp": [(256, 64), (128, 256), (10, 128)],
        "mnist1d_mlp": [(256, 40), (256, 256), (10, 256)],
    }


def test_mnist1d_cnn_other_length() -> None:
    model = create_model("mnist1d_cnn", length=23, in_channels=2, num_classes=4)
    assert model(torch.randn(3, 2, 23)).shape == (3, 4)
