"""How STR's final sparsity responds to weight decay λ: the curve the search inverts.

Trains the built-in STR models for a sweep of λ values and prints, per λ, the final sparsity, test
accuracy, FLOPs and the epoch at which sparsity came within 1 percentage point of its final value.
With ``--plot`` it draws three panels: final sparsity against λ, the learnt per-layer budget of
one run, and sparsity over epochs.

Usage::

    python -m benchmarks.sparsity_response                 # digits and mnist1d, 30 epochs
    python -m benchmarks.sparsity_response --quick         # digits, 3 values, 3 epochs
    python -m benchmarks.sparsity_response --plot docs/img/sparsity_response.png --json out.json
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from str_core.config import DataConfig, STRConfig, TrainConfig
from str_core.train import Trainer, build_run

SETUPS: dict[str, str] = {"digits": "digits_cnn", "mnist1d": "mnist1d_cnn"}
LAMBDAS = (0.0, 1e-3, 2e-3, 5e-3, 1e-2, 2e-2, 3e-2, 5e-2)
QUICK_LAMBDAS = (0.0, 5e-3, 2e-2)


@dataclass
class SweepPoint:
    """One training run of the sweep."""

    dataset: str
    model: str
    weight_decay: float
    sparsity: float
    test_acc: float
    flops: float
    dense_flops: float
    settled_epoch: int
    seconds: float
    trajectory: list[float] = field(default_factory=list)
    layers: dict[str, float] = field(default_factory=dict)
    layer_params: dict[str, int] = field(default_factory=dict)


def settled_epoch(trajectory: list[float], band: float = 0.01) -> int:
    """First epoch (1-based) after which sparsity stays within ``band`` of its final value."""
    final = trajectory[-1]
    epoch = len(trajectory)
    for i in range(len(trajectory) - 1, -1, -1):
        if abs(trajectory[i] - final) > band:
            break
        epoch = i + 1
    return epoch


def run_point(
    dataset: str, weight_decay: float, epochs: int, s_init: float, seed: int
) -> SweepPoint:
    """Train one STR model and summarise it."""
    model = SETUPS[dataset]
    cfg = TrainConfig(epochs=epochs, lr=0.1, batch_size=128, weight_decay=weight_decay, seed=seed)
    run = build_run(model, DataConfig(name=dataset), cfg, STRConfig(s_init=s_init))
    started = time.perf_counter()
    result = Trainer(run.model, cfg, run.data).fit()
    seconds = time.perf_counter() - started
    trajectory = [m.scalars["sparsity"] for m in result.history]
    final = result.final
    return SweepPoint(
        dataset=dataset,
        model=model,
        weight_decay=weight_decay,
        sparsity=final.scalars["sparsity"],
        test_acc=final.scalars["test_acc"],
        flops=final.scalars["flops"],
        dense_flops=final.scalars["dense_flops"],
        settled_epoch=settled_epoch(trajectory),
        seconds=seconds,
        trajectory=trajectory,
        layers={n: s.sparsity for n, s in final.layers.items()},
        layer_params={n: s.params for n, s in final.layers.items()},
    )


def print_table(points: list[SweepPoint]) -> None:
    """Print one row per run."""
    header = (
        f"{'dataset':<8} {'λ':>8} {'sparsity':>9} {'test acc':>9} {'MACs':>10} "
        f"{'settled@':>8} {'seconds':>8}"
    )
    print(header)
    print("-" * len(header))
    for p in points:
        print(
            f"{p.dataset:<8} {p.weight_decay:>8.0e} {p.sparsity:>9.2%} {p.test_acc:>9.2%} "
            f"{p.flops / 1e3:>9.1f}K {p.settled_epoch:>8d} {p.seconds:>8.1f}"
        )


def plot(points: list[SweepPoint], path: Path, highlight: float) -> None:
    """Three panels: sparsity vs λ, one run's per-layer budget, sparsity over epochs."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(16, 4.6))
    datasets = sorted({p.dataset for p in points})
    for ds in datasets:
        pts = [p for p in points if p.dataset == ds and p.weight_decay > 0]
        axes[0].plot([p.weight_decay for p in pts], [100 * p.sparsity for p in pts], "o-", label=ds)
    axes[0].set_xscale("log")
    axes[0].set_xlabel("weight decay λ")
    axes[0].set_ylabel("final sparsity (%)")
    axes[0].set_title("STR sparsity is monotone in λ")
    axes[0].grid(alpha=0.3)
    axes[0].legend()

    chosen = [p for p in points if p.dataset == datasets[0] and p.weight_decay == highlight]
    if chosen:
        p = chosen[0]
        names = list(p.layers)
        bars = axes[1].bar(range(len(names)), [100 * p.layers[n] for n in names], color="tab:blue")
        for bar, n in zip(bars, names, strict=True):
            axes[1].annotate(
                f"{p.layer_params[n]:,}",
                (bar.get_x() + bar.get_width() / 2, bar.get_height()),
                ha="center",
                va="bottom",
                fontsize=8,
            )
        axes[1].set_xticks(range(len(names)), names, rotation=20, fontsize=8)
        axes[1].set_ylabel("layer sparsity (%)")
        axes[1].set_ylim(0, 105)
        axes[1].set_title(
            f"learnt budget: {p.model}, λ={p.weight_decay:g} ({p.sparsity:.1%} overall)\n"
            "bar labels: weights per layer"
        )

    for p in (p for p in points if p.dataset == datasets[0]):
        epochs = range(1, len(p.trajectory) + 1)
        axes[2].plot(epochs, [100 * s for s in p.trajectory], label=f"λ={p.weight_decay:g}")
    axes[2].set_xlabel("epoch")
    axes[2].set_ylabel("sparsity (%)")
    axes[2].set_title(f"sparsity over training ({datasets[0]})")
    axes[2].grid(alpha=0.3)
    axes[2].legend(fontsize=7, ncol=2)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> list[SweepPoint]:
    """Run the sweep from the command line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--datasets", nargs="+", default=list(SETUPS), choices=list(SETUPS))
    parser.add_argument("--lambdas", nargs="+", type=float, default=None)
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--s-init", type=float, default=-5.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help="digits, 3 values of λ, 3 epochs")
    parser.add_argument("--plot", type=Path, default=None, help="write the figure (PNG)")
    parser.add_argument("--highlight", type=float, default=5e-3, help="λ of the budget panel")
    parser.add_argument("--json", type=Path, default=None, help="write the points as JSON")
    args = parser.parse_args(argv)
    if args.quick:
        args.datasets, args.epochs = ["digits"], 3
    lambdas = args.lambdas or (QUICK_LAMBDAS if args.quick else LAMBDAS)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {args.epochs} epochs")
    points = [
        run_point(ds, wd, args.epochs, args.s_init, args.seed)
        for ds in args.datasets
        for wd in lambdas
    ]
    print_table(points)
    if args.plot:
        plot(points, args.plot, args.highlight)
    if args.json:
        data: list[dict[str, Any]] = [p.__dict__ for p in points]
        args.json.write_text(json.dumps(data, indent=2) + "\n")
    return points


if __name__ == "__main__":
    main()
