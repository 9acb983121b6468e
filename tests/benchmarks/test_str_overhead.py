"""Smoke tests of the STR overhead benchmark on a tiny CNN (one step, no timing assertions)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from benchmarks._memory import METHOD_CLEAR_REFS, METHOD_RU_MAXRSS, PeakMemory
from benchmarks.str_overhead import (
    VARIANTS,
    BenchConfig,
    Variant,
    VariantResult,
    build_workload,
    format_table,
    goal_report,
    measure_memory,
    measure_memory_in_subprocess,
    run_config,
    summarize,
    use_reference_threshold,
)
from str_core.config import STRConfig
from str_core.layers import STRMixin, sparsify

TINY = BenchConfig("tiny", "unused", batch_size=4, image_size=8, num_classes=3, steps=1, warmup=0)


def _tiny_cnn() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1),
        nn.BatchNorm2d(8),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(8, 3),
    )


def _tiny_builder(str_config: STRConfig | None) -> nn.Module:
    model = _tiny_cnn()
    return model if str_config is None else sparsify(model, str_config)


def _losses(variant: Variant, str_config: STRConfig, steps: int = 2) -> list[float]:
    workload = build_workload(
        _tiny_builder,
        variant,
        batch_size=TINY.batch_size,
        input_shape=TINY.input_shape,
        num_classes=TINY.num_classes,
        str_config=str_config,
    )
    return [workload.step().item() for _ in range(steps)]


def test_variants_compute_the_same_function_at_zero_threshold() -> None:
    # sigmoid(-1e4) == 0 in float32, so the STR layers compute exactly the dense layers.
    config = STRConfig(s_init=-1e4)
    dense = _losses("dense", config)
    for variant in ("str", "reference"):
        assert _losses(variant, config) == pytest.approx(dense, rel=1e-6, abs=1e-7)


def test_str_and_reference_agree_when_weights_are_pruned() -> None:
    # Threshold sigmoid(-2) = 0.12 prunes many weights of this init (|w| <= 1/sqrt(27) = 0.19).
    config = STRConfig(s_init=-2.0)
    workload = build_workload(
        _tiny_builder, "str", batch_size=4, input_shape=(3, 8, 8), num_classes=3, str_config=config
    )
    conv = workload.model.get_submodule("0")
    assert isinstance(conv, STRMixin)
    assert (conv.sparse_weight() == 0).float().mean().item() > 0.2
    ours, reference = _losses("str", config), _losses("reference", config)
    assert ours == pytest.approx(reference, rel=1e-6, abs=1e-7)
    assert ours[0] != pytest.approx(_losses("dense", config)[0], rel=1e-4)


def test_use_reference_threshold_patches_every_str_layer() -> None:
    model = _tiny_builder(STRConfig())
    conv = model.get_submodule("0")
    assert isinstance(conv, STRMixin)
    ours = conv.sparse_weight().grad_fn
    assert ours is not None and "SoftThreshold" in ours.name()
    assert use_reference_threshold(model) == 2
    reference = conv.sparse_weight().grad_fn
    assert reference is not None and reference.name() == "MulBackward0"
    assert use_reference_threshold(_tiny_cnn()) == 0
    with pytest.raises(ValueError, match="STR layers"):
        build_workload(
            lambda cfg: _tiny_cnn(),
            "reference",
            batch_size=2,
            input_shape=(3, 8, 8),
            num_classes=3,
        )


def _saved_bytes_beyond_parameters(variant: Variant) -> tuple[int, int]:
    """Bytes of the tensors one forward pass keeps for backward (parameters excluded), and the
    bytes of the prunable weights."""
    workload = build_workload(
        _tiny_builder, variant, batch_size=2, input_shape=(3, 8, 8), num_classes=3
    )
    params = {p.untyped_storage().data_ptr() for p in workload.model.parameters()}
    saved: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        storage = t.untyped_storage()
        saved[storage.data_ptr()] = storage.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        workload.model(workload.inputs)
    weights = sum(p.numel() * p.element_size() for p in workload.model.parameters() if p.dim() > 1)
    return sum(n for ptr, n in saved.items() if ptr not in params), weights


def test_reference_variant_keeps_three_weight_sized_tensors_per_layer() -> None:
    # sign(W), relu(|W| - t) and the sparse weight the op saves: the plain-autograd baseline
    # (plus t = g(s), which sigmoid saves: one 4-byte scalar per layer, two layers)
    dense, weights = _saved_bytes_beyond_parameters("dense")
    reference, _ = _saved_bytes_beyond_parameters("reference")
    assert reference - dense == 3 * weights + 2 * 4


def test_build_workload_rejects_unknown_variant() -> None:
    with pytest.raises(ValueError, match="unknown variant"):
        build_workload(
            _tiny_builder,
            "sparse",  # type: ignore[arg-type]
            batch_size=2,
            input_shape=(3, 8, 8),
            num_classes=3,
        )


def test_run_config_returns_one_row_per_variant_with_ratios_to_dense() -> None:
    rows = run_config(TINY, "cpu", memory=False, builder=_tiny_builder)
    assert [r.variant for r in rows] == list(VARIANTS)
    assert all(r.config == "tiny" and r.device == "cpu" for r in rows)
    assert all(len(r.step_ms_all) == 1 and r.step_ms > 0 for r in rows)
    dense = rows[0]
    assert dense.step_ratio == 1.0
    for r in rows:
        assert r.step_ratio == pytest.approx(r.step_ms / dense.step_ms)
        assert r.peak_mib is None and r.memory_method is None
    assert rows[1].first_loss == pytest.approx(rows[2].first_loss, rel=1e-6)


def test_measure_memory_reports_a_peak_at_least_the_starting_rss() -> None:
    workload = build_workload(
        _tiny_builder, "str", batch_size=4, input_shape=(3, 8, 8), num_classes=3
    )
    peak = measure_memory(workload, steps=1)
    assert peak.method in (METHOD_CLEAR_REFS, METHOD_RU_MAXRSS)
    assert peak.before_mib > 0
    assert peak.peak_mib >= peak.before_mib


def test_measure_memory_in_subprocess_with_a_registry_model() -> None:
    config = BenchConfig("r20", "resnet20", 2, 32, 10, steps=1, memory_steps=1)
    peak = measure_memory_in_subprocess(config, "str")
    assert peak.peak_mib >= peak.before_mib > 0


def test_summarize_computes_memory_ratios_and_increments() -> None:
    times = {"dense": [10.0, 30.0, 20.0], "str": [21.0, 22.0, 23.0]}
    memory = {
        "dense": PeakMemory(before_mib=100.0, peak_mib=200.0, method=METHOD_CLEAR_REFS),
        "str": PeakMemory(before_mib=100.0, peak_mib=250.0, method=METHOD_CLEAR_REFS),
    }
    rows = summarize("resnet50", "cpu", times, {"dense": 1.0, "str": 1.0}, memory)
    dense, ours = rows
    assert dense.step_ms == 20.0
    assert ours.step_ratio == pytest.approx(1.1)
    assert ours.peak_ratio == pytest.approx(1.25)
    assert ours.increment_mib == pytest.approx(150.0)
    assert ours.increment_ratio == pytest.approx(1.5)
    assert goal_report(rows) == [
        "resnet50/cpu: step 1.100x (goal <= 1.05x) MISSES; peak memory 1.250x (goal <= 1.1x) MISSES"
    ]


def test_format_table_has_a_row_per_result_and_marks_missing_memory() -> None:
    row = VariantResult("tiny", "cpu", "dense", 1.0, 2.0, (2.0,), 1.0)
    lines = format_table([row, row]).splitlines()
    assert len(lines) == 4
    assert all(line.count("|") == 10 for line in lines)
    assert lines[2].endswith("| n/a | n/a | n/a | n/a |")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.gpu
def test_run_config_on_cuda() -> None:
    rows = run_config(TINY, "cuda", memory=False, builder=_tiny_builder)
    assert [r.device for r in rows] == ["cuda"] * 3
