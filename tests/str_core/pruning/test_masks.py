"""Masks as parametrizations: forward, gradients, state_dict, metrics and export (bake)."""

from __future__ import annotations

import copy
import io
import pickle

import pytest
import torch
from torch import nn

from str_core.config import PruneConfig, STRConfig
from str_core.layers import prunable_layers, sparsify, weight_parameter
from str_core.metrics import global_sparsity, sparsity_stats
from str_core.pruning import MagnitudeMask, TopKMask, attach_masks, bake, layer_masks
from str_core.pruning.masks import topk_mask

from .conftest import SmallNet, layer_sparsities, small_net

GMP = PruneConfig(target_sparsity=0.75, method="gmp")
DNW = PruneConfig(target_sparsity=0.75, method="dnw")
X = torch.randn(8, 1, 4, 4, generator=torch.Generator().manual_seed(1))


def weight_grads(model: nn.Module) -> dict[str, torch.Tensor]:
    """Gradient of the trainable weight of every prunable layer after one backward pass."""
    model.zero_grad()
    model(X).square().sum().backward()
    return {n: weight_parameter(m).grad.clone() for n, m in prunable_layers(model)}  # type: ignore[union-attr]


def test_attach_keeps_the_function_until_pruned_and_metrics_see_the_mask() -> None:
    model = small_net()
    dense = copy.deepcopy(model)
    attach_masks(model, GMP)
    assert set(layer_masks(model)) == {"conv", "fc1", "fc2"}
    assert all(isinstance(m, MagnitudeMask) for m in layer_masks(model).values())
    model.eval()
    dense.eval()
    torch.testing.assert_close(model(X), dense(X), rtol=0, atol=0)
    assert global_sparsity(model) == 0.0
    mask = layer_masks(model)["fc1"]
    assert isinstance(mask, MagnitudeMask)
    mask.mask[:, :32] = False  # half of fc1
    assert layer_sparsities(model)["fc1"] == 0.5
    assert mask.pruned == 8 * 32
    assert torch.equal(model.fc1.weight[:, :32], torch.zeros(8, 32))


def test_gmp_gradient_skips_pruned_weights() -> None:
    model = attach_masks(small_net(), GMP)
    mask = layer_masks(model)["fc1"]
    assert isinstance(mask, MagnitudeMask)
    mask.mask[:, ::2] = False
    grad = weight_grads(model)["fc1"]
    assert torch.count_nonzero(grad[:, ::2]) == 0
    assert torch.count_nonzero(grad[:, 1::2]) > 0


def test_dnw_keeps_the_top_k_and_its_gradient_reaches_pruned_weights() -> None:
    model = attach_masks(small_net(), DNW)
    masks = layer_masks(model)
    assert all(isinstance(m, TopKMask) for m in masks.values())
    # pruned from step 0: exactly round(0.25 · n) weights kept in every layer
    for name, module in prunable_layers(model):
        original = weight_parameter(module).detach()
        effective = module.weight.detach()
        keep = round(0.25 * original.numel())
        assert int(torch.count_nonzero(effective)) == keep, name
        kept = effective != 0
        assert original.abs()[kept].min() >= original.abs()[~kept].max()  # the largest |W|
    assert global_sparsity(model) == pytest.approx(0.75, abs=1 / sparsity_stats(model).total)

    grads = weight_grads(model)
    # straight-through: the trainable weight gets the gradient of the masked weight, unmasked
    dense = small_net()
    with torch.no_grad():
        for (_, d), (_, m) in zip(prunable_layers(dense), prunable_layers(model), strict=True):
            d.weight.copy_(m.weight)
    dense_grads = weight_grads(dense)
    for name, grad in grads.items():
        torch.testing.assert_close(grad, dense_grads[name])
    pruned = model.fc1.weight.detach() == 0
    assert torch.count_nonzero(grads["fc1"][pruned]) > 0


def test_topk_mask_is_exact_with_ties() -> None:
    w = torch.ones(10, 10)
    for keep in (0, 1, 37, 50, 99, 100):
        assert int(topk_mask(w, keep).sum()) == keep
    w = torch.tensor([[0.1, -3.0], [2.0, -0.5]])
    assert topk_mask(w, 2).tolist() == [[False, True], [True, False]]
    assert topk_mask(w, 3).tolist() == [[False, True], [True, True]]


def test_masks_are_buffers_restored_from_a_state_dict() -> None:
    trained = attach_masks(small_net(), GMP)
    mask = layer_masks(trained)["conv"]
    assert isinstance(mask, MagnitudeMask)
    mask.mask[0] = False
    keys = trained.state_dict().keys()
    assert "conv.parametrizations.weight.original" in keys
    assert "conv.parametrizations.weight.0.mask" in keys
    fresh = attach_masks(small_net(seed=5), GMP)
    fresh.load_state_dict(trained.state_dict())
    assert layer_sparsities(fresh) == layer_sparsities(trained)

    dnw = attach_masks(small_net(), DNW)
    assert "fc1.parametrizations.weight.0.keep" in dnw.state_dict()
    other = attach_masks(small_net(), PruneConfig(target_sparsity=0.5, method="dnw"))
    other.load_state_dict(dnw.state_dict())  # the kept count comes from the state_dict
    assert layer_sparsities(other) == layer_sparsities(dnw)


def test_bake_leaves_plain_layers_with_the_same_outputs_and_sparsity() -> None:
    for cfg in (GMP, DNW):
        model = attach_masks(small_net(), cfg)
        mask = layer_masks(model)["fc1"]
        if isinstance(mask, MagnitudeMask):
            mask.mask[:, :40] = False
        model.eval()
        before = model(X)
        sparsities = layer_sparsities(model)
        param = weight_parameter(model.fc1)
        bake(model)
        assert type(model.fc1) is nn.Linear and type(model.conv) is nn.Conv2d
        assert model.fc1.weight is param  # optimizers holding it stay valid
        assert layer_masks(model) == {}
        assert not any("parametrizations" in k for k in model.state_dict())
        torch.testing.assert_close(model(X), before, rtol=0, atol=0)
        assert layer_sparsities(model) == sparsities
        restored = pickle.loads(pickle.dumps(model))
        torch.testing.assert_close(restored(X), before, rtol=0, atol=0)
        torch.save(model, io.BytesIO())
    plain = small_net()
    assert bake(plain) is plain


def test_attach_refuses_str_models_and_double_attachment() -> None:
    with pytest.raises(ValueError, match="dense model"):
        attach_masks(sparsify(small_net(), STRConfig()), GMP)
    model = attach_masks(small_net(), GMP)
    with pytest.raises(ValueError, match="already"):
        attach_masks(model, GMP)
    with pytest.raises(ValueError, match="no prunable"):
        attach_masks(nn.Sequential(nn.ReLU()), GMP)


def test_weight_parameter_is_what_the_optimizer_trains() -> None:
    model = small_net()
    plain = weight_parameter(model.fc1)
    assert plain is model.fc1.weight
    attach_masks(model, GMP)
    assert weight_parameter(model.fc1) is plain  # the parametrization keeps the parameter
    assert not isinstance(model.fc1.weight, nn.Parameter)
    with pytest.raises(TypeError, match="no weight"):
        weight_parameter(nn.ReLU())


def test_deepcopy_of_a_masked_model() -> None:
    model = attach_masks(SmallNet(), DNW)
    clone = copy.deepcopy(model)
    assert layer_sparsities(clone) == layer_sparsities(model)


def test_baking_an_export_copy_leaves_the_training_model_masked() -> None:
    model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 4))
    attach_masks(model, PruneConfig(target_sparsity=0.5, method="dnw"))
    exported = bake(copy.deepcopy(model))
    x = torch.randn(3, 8)
    # the original still computes with its masks (a shared parametrized class stays intact)
    assert torch.equal(model(x), exported(x))
    assert type(exported[0]) is nn.Linear
    assert type(model[0]) is not nn.Linear and torch.nn.utils.parametrize.is_parametrized(model[0])
