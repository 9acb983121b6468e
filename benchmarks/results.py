"""The paper's comparisons on the built-in data: every method at the same target, several seeds.

For each dataset (``mnist1d`` with ``mnist1d_cnn``, ``digits`` with ``digits_cnn``) and target
sparsity (90 %, 95 %, 98 %), one comparison job (:func:`workers.compare.run_comparison`, the same
code as ``POST /jobs`` with ``methods``) trains STR (λ searched to ±0.5 pp at the first seed, then
the found λ at the other seeds) and the baselines at exactly the target: GMP, global magnitude,
ERK, DNW, and STR's learnt budget trained with GMP and with DNW. At the ``--ablation-targets`` the
STR ablations run too: an L1 penalty instead of weight decay, g = exp instead of the sigmoid, and
one threshold per output channel. Every method uses the spec's default recipe (SGD, lr 0.1 cosine,
batch 128) for ``--epochs`` epochs; the baselines decay their weights with 5e-4.

Then, per dataset, one STR run at the 90 % λ is repeated with the plain trainer to draw its
per-layer budget and threshold dynamics, and the learnt budgets are set beside uniform and ERK.

Usage::

    python -m benchmarks.results --json runs/results.json          # everything, ~45 min (2 cores)
    python -m benchmarks.results --datasets digits --targets 0.9 --seeds 0 1 --json runs/r.json
    python -m benchmarks.results --report runs/results.json        # tables and figures again

Tables are printed as Markdown (docs/results.md holds the latest); figures go to ``--figures``.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import ray
from matplotlib.figure import Figure

from str_core.config import DataConfig, STRConfig, TrainConfig
from str_core.models import create_model
from str_core.pruning import erk_budget, layer_sizes
from str_core.train import Trainer, build_run
from strsearch.spec import DEFAULT_METHODS, SearchSpec
from workers import plots
from workers.compare import run_comparison
from workers.search import ensure_ray
from workers.tracking import TrackingSettings

MODELS = {"digits": "digits_cnn", "mnist1d": "mnist1d_cnn"}
MAIN_METHODS = (*DEFAULT_METHODS, "str_to_dnw")
ABLATIONS = ("str_l1", "str_exp", "str_channel")


def comparison_spec(
    dataset: str, target: float, *, epochs: int, seeds: Sequence[int], ablations: bool
) -> SearchSpec:
    """The comparison job of one (dataset, target)."""
    methods = [*MAIN_METHODS, *(ABLATIONS if ablations else ())]
    return SearchSpec.parse(
        {
            "model": MODELS[dataset],
            "dataset": dataset,
            "target_sparsity": target,
            "training": {"epochs": epochs},
            "search": {"max_trials": 12, "parallel_trials": 2},
            "methods": methods,
            "comparison": {"seeds": list(seeds)},
        }
    )


def run_all(args: argparse.Namespace) -> dict[str, Any]:
    """Run every comparison; results are saved to ``--json`` after each one."""
    saved: dict[str, Any] = {}
    if args.json and Path(args.json).exists():
        saved = json.loads(Path(args.json).read_text())
    ensure_ray(num_cpus=args.cpus)
    with tempfile.TemporaryDirectory(prefix="strsearch-results-") as storage:
        for dataset in args.datasets:
            for target in args.targets:
                key = f"{dataset}|{target:g}"
                if key in saved:
                    print(f"{key}: kept from {args.json}", flush=True)
                    continue
                spec = comparison_spec(
                    dataset,
                    target,
                    epochs=args.epochs,
                    seeds=args.seeds,
                    ablations=target in args.ablation_targets,
                )
                started = time.perf_counter()
                result = run_comparison(
                    spec, storage_path=storage, tracking=TrackingSettings(enabled=False)
                )
                saved[key] = result.to_dict() | {
                    "wall_s": time.perf_counter() - started,
                    "epochs": args.epochs,
                    "model": spec.model,
                }
                print(f"{key}: {saved[key]['wall_s']:.0f} s", flush=True)
                if args.json:
                    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
                    Path(args.json).write_text(json.dumps(saved, indent=1))
    ray.shutdown()
    return saved


# ------------------------------------------------------------------------------------ tables


def _pm(mean: Any, std: Any) -> str:
    if not isinstance(mean, int | float):
        return "–"
    return f"{100 * mean:.2f} ± {100 * (std or 0):.2f}"


def method_table(key: str, result: Mapping[str, Any]) -> str:
    """One comparison as a Markdown table."""
    dataset, target = key.split("|")
    lines = [
        f"**{dataset}** ({result['model']}, {result['epochs']} epochs) at "
        f"**{100 * float(target):g} %** · {result['wall_s'] / 60:.0f} min",
        "",
        "| method | seeds | sparsity % | test acc % | MACs (% of dense) | λ |",
        "|---|---|---|---|---|---|",
    ]
    for row in result["table"]:
        flops, dense = row.get("flops_mean"), row.get("dense_flops")
        share = f"{flops:,.0f} ({100 * flops / dense:.1f})" if flops and dense else "–"
        failed = f" ({row['failed']} failed)" if row.get("failed") else ""
        lam = f"{row['weight_decay']:.3g}" if row.get("weight_decay") is not None else "–"
        lines.append(
            f"| {row['method']} | {len(row['seeds'])}{failed} | "
            f"{_pm(row['sparsity_mean'], row['sparsity_std'])} | "
            f"{_pm(row['test_acc_mean'], row['test_acc_std'])} | {share} | {lam} |"
        )
    missed = [m for m, s in result["searches"].items() if not s["reached"]]
    if missed:
        lines.append("")
        lines.append(f"Searches that did not land within ±0.5 pp: {', '.join(missed)}.")
    return "\n".join(lines)


def _str_budget(result: Mapping[str, Any], method: str = "str") -> dict[str, float]:
    search = result["searches"].get(method) or {}
    best = search.get("best") or {}
    return dict(best.get("budget") or {})


def _keys(dataset: str, saved: Mapping[str, Any]) -> list[str]:
    """The saved comparisons of ``dataset``, by target."""
    mine = [k for k in saved if k.startswith(f"{dataset}|")]
    return sorted(mine, key=lambda k: float(k.split("|")[1]))


def budget_table(dataset: str, saved: Mapping[str, Any]) -> str:
    """STR's learnt per-layer sparsity at each target beside the uniform and ERK budgets."""
    keys = _keys(dataset, saved)
    if not keys:
        return ""
    model = create_model(MODELS[dataset], in_channels=1)
    sizes = layer_sizes(model)
    header = ["layer", "weights"]
    columns: list[dict[str, float]] = []
    for key in keys:
        target = float(key.split("|")[1])
        header += [f"STR {100 * target:g}", f"ERK {100 * target:g}"]
        columns += [_str_budget(saved[key]), erk_budget(model, target)]
    header.append("uniform")
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for layer, size in sizes.items():
        cells = [f"`{layer}`", f"{size:,}"]
        cells += [f"{100 * c[layer]:.1f}" if layer in c else "–" for c in columns]
        cells.append("= target")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


# ----------------------------------------------------------------------------------- figures


def targets_figure(dataset: str, saved: Mapping[str, Any]) -> Figure:
    """Test accuracy (mean ± std over seeds) against the target, one line per method."""
    fig = Figure(figsize=(7.5, 5.0), layout="constrained")
    ax = fig.add_subplot()
    keys = _keys(dataset, saved)
    methods = list(dict.fromkeys(r["method"] for k in keys for r in saved[k]["table"]))
    for index, method in enumerate(methods):
        xs, ys, errs = [], [], []
        for key in keys:
            row = next((r for r in saved[key]["table"] if r["method"] == method), None)
            if row is None or row["test_acc_mean"] is None:
                continue
            xs.append(100 * float(key.split("|")[1]))
            ys.append(100 * row["test_acc_mean"])
            errs.append(100 * (row["test_acc_std"] or 0))
        style = "-" if method == "str" else "--" if method.startswith("str") else ":"
        ax.errorbar(
            xs, ys, yerr=errs, fmt="o" + style, capsize=3, color=f"C{index % 10}", label=method
        )
    ax.set_xlabel("target sparsity (%)")
    ax.set_ylabel("test accuracy (%), mean ± std over seeds")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.suptitle(f"{MODELS[dataset]} on {dataset}: accuracy at equal sparsity")
    return fig


def str_run_figures(dataset: str, result: Mapping[str, Any], epochs: int) -> list[Figure]:
    """Retrain STR at the λ its 90 % search found (seed 0) and draw its budget and dynamics."""
    best = result["searches"]["str"]["best"]
    recipe = TrainConfig(epochs=epochs, weight_decay=best["weight_decay"], seed=0)
    run = build_run(MODELS[dataset], DataConfig(name=dataset), recipe, STRConfig(best["s_init"]))
    history = Trainer(run.model, recipe, run.data).fit().history
    title = f"STR on {dataset}, λ={best['weight_decay']:.3g} (90 % search)"
    return [
        plots.budget_figure(history[-1].layers, title=title),
        plots.dynamics_figure(history, title=title),
    ]


def report(saved: Mapping[str, Any], figures: Path | None, redraw_runs: bool) -> None:
    """Print every table; draw the figures into ``figures``."""
    for key, result in saved.items():
        print(method_table(key, result), end="\n\n")
    for dataset, model in MODELS.items():
        table = budget_table(dataset, saved)
        if table:
            print(f"Per-layer sparsity (%) of {model}:\n\n{table}\n")
        if figures is None or not any(k.startswith(f"{dataset}|") for k in saved):
            continue
        figures.mkdir(parents=True, exist_ok=True)
        plots.save_png(targets_figure(dataset, saved), figures / f"results_{dataset}.png")
        key = f"{dataset}|0.9"
        if redraw_runs and key in saved and saved[key]["searches"]["str"].get("best"):
            budget, dynamics = str_run_figures(dataset, saved[key], int(saved[key]["epochs"]))
            plots.save_png(budget, figures / f"results_{dataset}_budget.png")
            plots.save_png(dynamics, figures / f"results_{dataset}_dynamics.png")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--datasets", nargs="+", default=list(MODELS), choices=list(MODELS))
    parser.add_argument("--targets", nargs="+", type=float, default=[0.9, 0.95, 0.98])
    parser.add_argument("--ablation-targets", nargs="*", type=float, default=[0.9])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--cpus", type=int, default=None, help="CPUs of the local Ray")
    parser.add_argument("--json", help="save (and resume) the results here")
    parser.add_argument("--report", help="only print the tables of a saved --json file")
    parser.add_argument("--figures", type=Path, default=Path("docs/img"))
    parser.add_argument(
        "--no-runs", action="store_true", help="skip retraining STR for the budget/dynamics figures"
    )
    args = parser.parse_args()
    saved = json.loads(Path(args.report).read_text()) if args.report else run_all(args)
    report(saved, args.figures, redraw_runs=not args.no_runs)


if __name__ == "__main__":
    main()
