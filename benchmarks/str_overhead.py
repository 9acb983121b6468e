"""Time and memory cost of STR layers in one training step, against the same dense network.

STR (Kusupati et al., ICML 2020, arXiv 2002.03231) computes every prunable layer with
``Ŵ = sign(W) · relu(|W| − g(s))``. This benchmark measures what that costs in one training step
(forward, cross-entropy backward, SGD step with momentum and weight decay) for three variants of
one network, built from the same seed:

* ``dense``: the plain model;
* ``str``: ``create_model(..., str_config=STRConfig(s_init=-5))``, whose layers use
  :func:`str_core.layers.soft_threshold` (a memory-lean custom autograd Function);
* ``reference``: the same STR model with each layer computing Ŵ by
  :func:`str_core.layers.soft_threshold_reference` (plain autograd ops) and applying the plain
  conv/linear op to it (layer instances are patched; ``str_core`` is not changed).

Step time: warm-up steps, then the median of N timed steps, the variants interleaved round-robin
(with a rotating start) so machine noise falls on all of them alike. Peak memory: each (config,
variant) runs in a fresh subprocess; on CPU the kernel's RSS high-water mark is reset after one
warm-up step and read after the measured steps (see :mod:`benchmarks._memory`), with glibc's
mmap threshold fixed so that freed tensors leave the RSS at once; on CUDA the caching allocator's
``max_memory_allocated`` is used. Ratios are to ``dense`` in the same run. Results and their
reading: ``docs/benchmarks.md``.

Usage::

    .venv/bin/python -m benchmarks.str_overhead [--quick] [--json PATH] [--steps N]
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import json
import os
import statistics
import subprocess
import sys
import time
import types
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from benchmarks._memory import METHOD_RU_MAXRSS, PeakMemory, PeakMemoryProbe
from str_core.config import STRConfig
from str_core.layers import STRMixin, soft_threshold_reference

Variant = Literal["dense", "str", "reference"]
VARIANTS: tuple[Variant, ...] = ("dense", "str", "reference")
ModelBuilder = Callable[[STRConfig | None], nn.Module]
"""Builds the dense model (argument ``None``) or its STR version."""

STR_CONFIG = STRConfig(s_init=-5.0)
GOALS: dict[str, tuple[float, float]] = {"resnet18_cifar": (1.05, 1.05), "resnet50": (1.05, 1.10)}
"""Per config name: the largest acceptable (step time, peak memory) ratio of STR to dense."""

MMAP_THRESHOLD = 128 * 1024
"""glibc mmap threshold of the memory workers (bytes); see :func:`measure_memory_in_subprocess`."""

_WORKER_PREFIX = "STR_OVERHEAD_MEMORY "
_REPO_ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class BenchConfig:
    """One network and input size to benchmark.

    Attributes:
        name: label in the results.
        model: name in the ``str_core.models`` registry.
        batch_size: examples per step.
        image_size: side of the square input images (3 channels).
        num_classes: classifier outputs.
        steps: timed steps per variant.
        warmup: untimed steps per variant before timing.
        memory_steps: steps measured for peak memory (after one warm-up step).
    """

    name: str
    model: str
    batch_size: int
    image_size: int
    num_classes: int
    steps: int
    warmup: int = 2
    memory_steps: int = 2

    @property
    def input_shape(self) -> tuple[int, ...]:
        """Shape of one example."""
        return (3, self.image_size, self.image_size)

    def builder(self) -> ModelBuilder:
        """A builder of this config's model from the registry."""
        from str_core.models import create_model

        def build(str_config: STRConfig | None) -> nn.Module:
            return create_model(self.model, num_classes=self.num_classes, str_config=str_config)

        return build


DEFAULT_CONFIGS: tuple[BenchConfig, ...] = (
    BenchConfig("resnet18_cifar", "resnet18_cifar", 64, 32, 10, steps=20),
    BenchConfig("resnet50", "resnet50", 8, 224, 1000, steps=10),
)
QUICK_CONFIGS: tuple[BenchConfig, ...] = (
    BenchConfig(
        "resnet18_cifar_quick", "resnet18_cifar", 8, 32, 10, steps=2, warmup=1, memory_steps=1
    ),
)


def _reference_sparse_weight(layer: STRMixin) -> Tensor:
    return soft_threshold_reference(layer.weight, layer.s, layer.g)


def _reference_forward(layer: STRMixin, x: Tensor) -> Tensor:
    # The plain op on the reference Ŵ, bypassing whatever the STR layer's own forward adds
    # around its op (such as recomputing Ŵ in backward), so the baseline stays plain autograd.
    w_hat = _reference_sparse_weight(layer)
    if isinstance(layer, nn.Linear):
        return F.linear(x, w_hat, layer.bias)
    if isinstance(layer, nn.Conv1d | nn.Conv2d | nn.Conv3d):
        out: Tensor = layer._conv_forward(x, w_hat, layer.bias)
        return out
    raise TypeError(f"no reference forward for {type(layer).__name__}")


def use_reference_threshold(model: nn.Module) -> int:
    """Make every STR layer of ``model`` compute with ``soft_threshold_reference``, in place.

    Each layer's ``sparse_weight`` becomes the plain-autograd formula, and its ``forward`` the
    plain conv/linear op on that weight, as a layer written without care for memory would be.

    Returns:
        The number of layers changed.
    """
    count = 0
    for module in model.modules():
        if isinstance(module, STRMixin):
            module.sparse_weight = types.MethodType(_reference_sparse_weight, module)  # type: ignore[method-assign]
            module.forward = types.MethodType(_reference_forward, module)
            count += 1
    return count


@dataclass
class Workload:
    """A model, its optimizer and one fixed batch: everything one training step needs."""

    model: nn.Module
    optimizer: torch.optim.Optimizer
    inputs: Tensor
    targets: Tensor

    def step(self) -> Tensor:
        """One training step; returns the loss (detached, before the update)."""
        self.optimizer.zero_grad(set_to_none=True)
        loss = F.cross_entropy(self.model(self.inputs), self.targets)
        loss.backward()  # type: ignore[no-untyped-call]
        self.optimizer.step()
        return loss.detach()


def build_workload(
    builder: ModelBuilder,
    variant: Variant,
    *,
    batch_size: int,
    input_shape: Sequence[int],
    num_classes: int,
    device: torch.device | str = "cpu",
    seed: int = 0,
    str_config: STRConfig = STR_CONFIG,
) -> Workload:
    """Build one variant with weights and batch drawn from ``seed`` (equal across variants).

    Args:
        builder: builds the dense model (``None``) or the STR model (an ``STRConfig``).
        variant: ``"dense"``, ``"str"`` or ``"reference"``.
        batch_size: examples in the batch.
        input_shape: shape of one example.
        num_classes: number of classes of the random targets.
        device: where the model and batch live.
        seed: seeds the model initialisation and the batch.
        str_config: STR settings of the ``str`` and ``reference`` variants.

    Returns:
        The workload, model in training mode; SGD lr 0.01, momentum 0.9, weight decay 5e-5.

    Raises:
        ValueError: for an unknown variant, or a reference variant with no STR layer.
    """
    if variant not in VARIANTS:
        raise ValueError(f"unknown variant {variant!r}; valid: {', '.join(VARIANTS)}")
    torch.manual_seed(seed)
    model = builder(None if variant == "dense" else str_config)
    if variant == "reference" and use_reference_threshold(model) == 0:
        raise ValueError("the reference variant needs a model with STR layers")
    model = model.to(device).train()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-5)
    gen = torch.Generator().manual_seed(seed + 1)
    inputs = torch.randn((batch_size, *input_shape), generator=gen).to(device)
    targets = torch.randint(0, num_classes, (batch_size,), generator=gen).to(device)
    return Workload(model, optimizer, inputs, targets)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_steps(
    workloads: Mapping[str, Workload], *, steps: int, warmup: int, device: torch.device | str
) -> dict[str, list[float]]:
    """Time training steps of several workloads, interleaved round-robin.

    Repetition ``r`` runs one step of each workload, starting at the ``r``-th (mod n), so no
    workload always runs first or after the same neighbour.

    Args:
        workloads: variant name -> workload.
        steps: timed steps per workload.
        warmup: untimed steps per workload first.
        device: the device the workloads run on (CUDA is synchronised around each step).

    Returns:
        Variant name -> step times in milliseconds, in run order.
    """
    device = torch.device(device)
    names = list(workloads)
    for _ in range(warmup):
        for name in names:
            workloads[name].step()
    times: dict[str, list[float]] = {name: [] for name in names}
    for rep in range(steps):
        k = rep % len(names)
        for name in names[k:] + names[:k]:
            _sync(device)
            start = time.perf_counter()
            workloads[name].step()
            _sync(device)
            times[name].append((time.perf_counter() - start) * 1e3)
    return times


def measure_memory(
    workload: Workload, *, steps: int, warmup: int = 1, device: torch.device | str = "cpu"
) -> PeakMemory:
    """Peak memory of ``steps`` training steps after ``warmup`` steps, in this process.

    On CPU this reads the process's RSS, so call it in a process that holds nothing else big
    (``measure_memory_in_subprocess`` does).
    """
    for _ in range(warmup):
        workload.step()
    gc.collect()
    probe = PeakMemoryProbe(device)
    probe.start()
    for _ in range(steps):
        workload.step()
    return probe.stop()


def measure_memory_in_subprocess(
    config: BenchConfig,
    variant: Variant,
    device: str = "cpu",
    *,
    mmap_threshold: int | None = MMAP_THRESHOLD,
) -> PeakMemory:
    """Run :func:`measure_memory` for one config and variant in a fresh Python process.

    Args:
        config: network, batch and step counts.
        variant: which variant to build.
        device: ``"cpu"`` or a CUDA device.
        mmap_threshold: sets glibc's ``MALLOC_MMAP_THRESHOLD_`` in the subprocess, so blocks of
            at least this many bytes are mapped and unmapped one by one and freed tensors leave
            the RSS at once; ``None`` keeps glibc's default (freed memory may stay resident, so
            the RSS before a step already holds the previous step's peak).

    Returns:
        The peak memory of the measured steps.

    Raises:
        RuntimeError: if the subprocess fails or prints no result.
    """
    request = {"config": dataclasses.asdict(config), "variant": variant, "device": device}
    cmd = [sys.executable, "-m", "benchmarks.str_overhead", "--memory-worker", json.dumps(request)]
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(_REPO_ROOT), env.get("PYTHONPATH")]))
    env.pop("MALLOC_MMAP_THRESHOLD_", None)
    if mmap_threshold is not None:
        env["MALLOC_MMAP_THRESHOLD_"] = str(mmap_threshold)
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False, cwd=_REPO_ROOT, env=env)
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith(_WORKER_PREFIX):
            return PeakMemory(**json.loads(line.removeprefix(_WORKER_PREFIX)))
    raise RuntimeError(
        f"memory worker for {config.name}/{variant} failed (exit {proc.returncode}):\n"
        f"{proc.stderr[-2000:]}"
    )


def _memory_worker(request_json: str) -> None:
    request = json.loads(request_json)
    config = BenchConfig(**request["config"])
    device = torch.device(request["device"])
    workload = build_workload(
        config.builder(),
        request["variant"],
        batch_size=config.batch_size,
        input_shape=config.input_shape,
        num_classes=config.num_classes,
        device=device,
    )
    peak = measure_memory(workload, steps=config.memory_steps, device=device)
    print(_WORKER_PREFIX + json.dumps(dataclasses.asdict(peak)), flush=True)


@dataclass(frozen=True)
class VariantResult:
    """One row of the results: a variant of a config on a device.

    Ratios are to the ``dense`` variant of the same config and device; memory fields are None
    when memory was not measured.
    """

    config: str
    device: str
    variant: str
    first_loss: float
    step_ms: float
    step_ms_all: tuple[float, ...]
    step_ratio: float
    peak_mib: float | None = None
    peak_ratio: float | None = None
    increment_mib: float | None = None
    increment_ratio: float | None = None
    memory_method: str | None = None


def summarize(
    config: str,
    device: str,
    times: Mapping[str, Sequence[float]],
    first_loss: Mapping[str, float],
    memory: Mapping[str, PeakMemory] | None = None,
) -> list[VariantResult]:
    """Medians and ratios to ``dense`` (which must be among ``times``) for each variant."""
    dense_ms = statistics.median(times["dense"])
    dense_mem = memory["dense"] if memory else None
    rows = []
    for variant, ms in times.items():
        median = statistics.median(ms)
        mem = memory[variant] if memory else None
        rows.append(
            VariantResult(
                config=config,
                device=device,
                variant=variant,
                first_loss=first_loss[variant],
                step_ms=median,
                step_ms_all=tuple(ms),
                step_ratio=median / dense_ms,
                peak_mib=mem.peak_mib if mem else None,
                peak_ratio=mem.peak_mib / dense_mem.peak_mib if mem and dense_mem else None,
                increment_mib=mem.increment_mib if mem else None,
                increment_ratio=(
                    mem.increment_mib / dense_mem.increment_mib if mem and dense_mem else None
                ),
                memory_method=mem.method if mem else None,
            )
        )
    return rows


def run_config(
    config: BenchConfig,
    device: str = "cpu",
    *,
    memory: bool = True,
    mmap_threshold: int | None = MMAP_THRESHOLD,
    builder: ModelBuilder | None = None,
) -> list[VariantResult]:
    """Benchmark the three variants of one config on one device.

    Args:
        config: network, batch and step counts.
        device: ``"cpu"`` or a CUDA device.
        memory: also measure peak memory, one subprocess per variant (registry models only).
        mmap_threshold: glibc setting of the memory subprocesses (see
            :func:`measure_memory_in_subprocess`).
        builder: overrides ``config.builder()`` for timing (memory needs the registry model).

    Returns:
        One :class:`VariantResult` per variant, ``dense`` first.
    """
    build = builder or config.builder()
    workloads: dict[str, Workload] = {
        v: build_workload(
            build,
            v,
            batch_size=config.batch_size,
            input_shape=config.input_shape,
            num_classes=config.num_classes,
            device=device,
        )
        for v in VARIANTS
    }
    first_loss: dict[str, float] = {v: w.step().item() for v, w in workloads.items()}
    times = time_steps(workloads, steps=config.steps, warmup=config.warmup, device=device)
    del workloads
    gc.collect()
    peaks: dict[str, PeakMemory] | None = None
    if memory:
        peaks = {
            v: measure_memory_in_subprocess(config, v, device, mmap_threshold=mmap_threshold)
            for v in VARIANTS
        }
    return summarize(config.name, device, times, first_loss, peaks)


def _fmt(value: float | None, spec: str) -> str:
    return "n/a" if value is None else format(value, spec)


def format_table(results: Sequence[VariantResult]) -> str:
    """The results as a Markdown table."""
    header = (
        "| config | device | variant | step ms (median) | × dense | peak MiB | × dense "
        "| step increment MiB | × dense |"
    )
    lines = [header, "|" + "---|" * header.count(" | ") + "---|"]
    for r in results:
        cells = [
            r.config,
            r.device,
            r.variant,
            _fmt(r.step_ms, ".1f"),
            _fmt(r.step_ratio, ".3f"),
            _fmt(r.peak_mib, ".0f"),
            _fmt(r.peak_ratio, ".3f"),
            _fmt(r.increment_mib, ".0f"),
            _fmt(r.increment_ratio, ".3f"),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def goal_report(results: Sequence[VariantResult]) -> list[str]:
    """One line per (config, device) saying whether ``str`` meets :data:`GOALS`."""
    lines = []
    for r in results:
        goal = GOALS.get(r.config)
        if r.variant != "str" or goal is None:
            continue
        time_ok = r.step_ratio <= goal[0]
        text = f"{r.config}/{r.device}: step {r.step_ratio:.3f}x (goal <= {goal[0]}x) "
        text += "meets" if time_ok else "MISSES"
        if r.peak_ratio is not None:
            mem_ok = r.peak_ratio <= goal[1]
            text += f"; peak memory {r.peak_ratio:.3f}x (goal <= {goal[1]}x) "
            text += "meets" if mem_ok else "MISSES"
        lines.append(text)
    return lines


def _metadata(argv: Sequence[str], mmap_threshold: int | None) -> dict[str, Any]:
    return {
        "command": " ".join(["python -m benchmarks.str_overhead", *argv]),
        "started": datetime.now(UTC).isoformat(timespec="seconds"),
        "torch": torch.__version__,
        "python": sys.version.split()[0],
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "cuda": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
        "str_config": dataclasses.asdict(STR_CONFIG),
        "malloc_mmap_threshold": mmap_threshold,
    }


def _parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.str_overhead", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small smoke run (ResNet-18, batch 8)")
    parser.add_argument("--json", type=Path, help="write the results and metadata to this file")
    parser.add_argument("--steps", type=int, help="timed steps per variant (overrides defaults)")
    parser.add_argument("--memory-steps", type=int, help="steps measured for peak memory")
    parser.add_argument("--config", action="append", help="only these configs (repeatable)")
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    parser.add_argument("--no-memory", action="store_true", help="time steps only")
    parser.add_argument(
        "--default-malloc",
        action="store_true",
        help=f"keep glibc's malloc defaults in the memory workers (default: mmap threshold "
        f"{MMAP_THRESHOLD} bytes, so freed tensors leave the RSS at once)",
    )
    parser.add_argument("--memory-worker", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point; returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    args = _parse_args(argv)
    if args.memory_worker:
        _memory_worker(args.memory_worker)
        return 0
    configs = list(QUICK_CONFIGS if args.quick else DEFAULT_CONFIGS)
    if args.config:
        unknown = sorted(set(args.config) - {c.name for c in configs})
        if unknown:
            valid = ", ".join(c.name for c in configs)
            print(f"unknown config(s) {unknown}; valid: {valid}", file=sys.stderr)
            return 2
        configs = [c for c in configs if c.name in args.config]
    configs = [
        dataclasses.replace(
            c,
            steps=args.steps or c.steps,
            memory_steps=args.memory_steps or c.memory_steps,
        )
        for c in configs
    ]
    mmap_threshold = None if args.default_malloc else MMAP_THRESHOLD
    devices = ["cpu", "cuda"] if args.device == "auto" else [args.device]
    if "cuda" in devices and not torch.cuda.is_available():
        if args.device == "cuda":
            print("CUDA is not available", file=sys.stderr)
            return 2
        devices.remove("cuda")
    meta = _metadata(argv, mmap_threshold)
    results: list[VariantResult] = []
    for device in devices:
        for config in configs:
            print(f"running {config.name} on {device} ...", file=sys.stderr, flush=True)
            results += run_config(
                config, device, memory=not args.no_memory, mmap_threshold=mmap_threshold
            )
    print(format_table(results))
    for line in goal_report(results):
        print(line)
    if not args.no_memory:
        malloc = "glibc defaults" if mmap_threshold is None else f"mmap threshold {mmap_threshold}"
        print(f"memory workers: fresh process per variant, malloc {malloc}")
    if any(r.memory_method == METHOD_RU_MAXRSS for r in results):
        print(
            "note: /proc/self/clear_refs is not writable; peak MiB is ru_maxrss, the peak over "
            "the whole worker process (model build included), not just the measured steps."
        )
    if args.json:
        payload = {
            "meta": meta,
            "results": [dataclasses.asdict(r) for r in results],
        }
        args.json.write_text(json.dumps(payload, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
