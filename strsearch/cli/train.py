"""``strsearch train``: one STR (or dense) training run with a per-layer report."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from strsearch.cli.errors import user_errors


def train(
    model: Annotated[str, typer.Option(help="Registered model name (see `strsearch models`).")],
    dataset: Annotated[str, typer.Option(help="Registered dataset (see `strsearch datasets`).")],
    weight_decay: Annotated[float, typer.Option(help="λ: weight decay of prunable weights.")] = 0.0,
    s_init: Annotated[float, typer.Option(help="Initial threshold parameter s.")] = -5.0,
    threshold_fn: Annotated[
        str, typer.Option(help="Threshold function g: sigmoid or exp.")
    ] = "sigmoid",
    granularity: Annotated[
        str, typer.Option(help="Thresholds per 'layer' or per 'channel'.")
    ] = "layer",
    exclude: Annotated[
        list[str] | None, typer.Option(help="Layer name or glob to keep dense (repeatable).")
    ] = None,
    dense: Annotated[bool, typer.Option("--dense", help="Train the plain dense model.")] = False,
    epochs: Annotated[int, typer.Option(min=1)] = 30,
    batch_size: Annotated[int, typer.Option(min=1)] = 128,
    lr: Annotated[float, typer.Option(help="Peak learning rate.")] = 0.1,
    optimizer: Annotated[str, typer.Option(help="sgd or adam.")] = "sgd",
    momentum: float = 0.9,
    warmup_epochs: Annotated[int, typer.Option(min=0)] = 0,
    schedule: Annotated[str, typer.Option(help="cosine or constant.")] = "cosine",
    label_smoothing: float = 0.0,
    threshold_weight_decay: Annotated[
        float | None, typer.Option(help="Decay of thresholds (default: λ).")
    ] = None,
    other_weight_decay: Annotated[
        float | None, typer.Option(help="Decay of BN parameters and biases (default: λ).")
    ] = None,
    seed: int = 0,
    device: str = "cpu",
    data_root: Annotated[
        Path | None, typer.Option(help="Folder of a disk dataset (CIFAR-10, image folders).")
    ] = None,
    val_fraction: float = 0.1,
    image_size: Annotated[int | None, typer.Option(help="Image side for image datasets.")] = None,
    num_workers: Annotated[int, typer.Option(min=0, help="Data-loader processes.")] = 0,
    init_checkpoint: Annotated[
        Path | None,
        typer.Option(help="Start from a dense model's weights (state_dict or checkpoint)."),
    ] = None,
    out: Annotated[
        Path | None, typer.Option(help="Folder for last.pt, results.json and budget.json.")
    ] = None,
    resume: Annotated[bool, typer.Option(help="Continue from OUT/last.pt if present.")] = False,
    json_output: Annotated[
        bool, typer.Option("--json", help="Print the results as JSON on stdout.")
    ] = False,
) -> None:
    """Train a model with STR and print its per-layer sparsity budget."""
    from str_core.budgets import write_budget
    from str_core.config import DataConfig, STRConfig, TrainConfig, to_dict
    from str_core.train import Trainer, build_run
    from strsearch.cli.progress import RichProgress
    from strsearch.cli.render import accounting_table, make_console

    console = make_console(stderr=json_output)
    with user_errors():
        if resume and out is None:
            raise ValueError("--resume needs --out (the folder holding last.pt)")
        train_cfg = TrainConfig(
            epochs=epochs,
            batch_size=batch_size,
            optimizer=optimizer,  # type: ignore[arg-type]
            lr=lr,
            momentum=momentum,
            weight_decay=weight_decay,
            threshold_weight_decay=threshold_weight_decay,
            other_weight_decay=other_weight_decay,
            warmup_epochs=warmup_epochs,
            schedule=schedule,  # type: ignore[arg-type]
            label_smoothing=label_smoothing,
            seed=seed,
            device=device,
        )
        str_cfg = None
        if not dense:
            str_cfg = STRConfig(
                s_init=s_init,
                threshold_fn=threshold_fn,
                granularity=granularity,  # type: ignore[arg-type]
                exclude=tuple(exclude or ()),
            )
        data_cfg = DataConfig(
            name=dataset,
            root=str(data_root) if data_root else None,
            val_fraction=val_fraction,
            image_size=image_size,
        )
        run = build_run(model, data_cfg, train_cfg, str_cfg, init_checkpoint=init_checkpoint)
        with RichProgress(console) as progress:
            trainer = Trainer(
                run.model,
                train_cfg,
                run.data,
                callbacks=[progress],
                checkpoint_dir=out,
                num_workers=num_workers,
            )
            console.print(
                f"[bold]{model}[/] on [bold]{dataset}[/] "
                f"({'dense' if dense else f'STR, λ={weight_decay:g}, s_init={s_init:g}'}); "
                f"parameter groups {trainer.group_sizes}",
                highlight=False,
            )
            result = trainer.fit(resume=resume)

    results: dict[str, Any] = {
        "model": model,
        "dataset": dataset,
        "str_config": to_dict(str_cfg) if str_cfg else None,
        "train_config": to_dict(train_cfg),
        "data_config": to_dict(data_cfg),
        "final": result.final.scalars,
        "history": [m.to_dict() for m in result.history],
        "accounting": result.accounting.to_dict(),
    }
    if out is not None:
        (out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
        write_budget(out / "budget.json", result.accounting.budget())
    if json_output:
        print(json.dumps(results, indent=2))
        return
    final = result.final.scalars
    console.print(
        accounting_table(result.accounting, title=f"{model} on {dataset}: per-layer budget")
    )
    acc_line = "  ".join(
        f"{k} {final[k]:.2%}" for k in ("val_acc", "test_acc", "test_top5") if k in final
    )
    console.print(
        f"[bold]sparsity {result.accounting.sparsity:.2%}[/]  {acc_line}  "
        f"MACs {result.accounting.sparse_flops:,} of {result.accounting.dense_flops:,}",
        highlight=False,
    )
    if out is not None:
        console.print(f"checkpoint, results.json and budget.json in {out}/", highlight=False)
