"""How long a trial's model takes to reach a proxying MLflow server: file by file or concurrently.

With served artifacts (``mlflow server --serve-artifacts``, as in the compose and Kubernetes
set-ups) every file of a logged model is one HTTP upload through the server, about twenty per
model. ``workers.tracking.trial.copy_artifacts`` sends them :data:`~workers.tracking.trial.
UPLOAD_THREADS` at a time; MLflow's own ``log_artifacts`` sends them one after the other. This
benchmark saves a real digits model once (``mlflow.pytorch.save_model`` with the model code, as a
trial does), then uploads that folder to fresh runs of a proxying server started for the run,
alternating the two arms round by round, and prints the median seconds per upload.

Usage::

    .venv/bin/python -m benchmarks.artifact_upload                  # 10 rounds
    .venv/bin/python -m benchmarks.artifact_upload --rounds 20 --json runs/upload.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import torch
from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository
from mlflow.tracking import MlflowClient

from str_core.config import DataConfig, STRConfig, TrainConfig
from str_core.train import build_run
from workers.mlflow_server import start_server, stop_server
from workers.tracking.trial import copy_artifacts, copy_model_code, save_trial_model


def save_model(folder: Path) -> int:
    """Save an (untrained) STR digits_cnn as a trial's models are saved; the number of files."""
    run = build_run("digits_cnn", DataConfig(name="digits"), TrainConfig(epochs=1), STRConfig())
    example = torch.stack([run.data.test[i][0] for i in range(2)])
    save_trial_model(run.model.eval(), folder / "model", example, copy_model_code(folder / "code"))
    return sum(1 for p in (folder / "model").rglob("*") if p.is_file())


def sequential(folder: Path, location: str, uri: str) -> None:
    """MLflow's own ``log_artifacts``: one upload after the other."""
    get_artifact_repository(location, tracking_uri=uri).log_artifacts(str(folder))  # type: ignore[no-untyped-call]


ARMS: dict[str, Callable[[Path, str, str], None]] = {
    "sequential": sequential,
    "concurrent": copy_artifacts,
}


def run_benchmark(rounds: int) -> dict[str, list[float]]:
    """Seconds of each upload, per arm (``rounds`` alternating rounds after one warm-up)."""
    with tempfile.TemporaryDirectory(prefix="strsearch-upload-") as tmp:
        root = Path(tmp)
        files = save_model(root / "saved")
        print(f"model folder: {files} files", file=sys.stderr)
        server = start_server(root / "server", proxy_artifacts=True)
        try:
            client = MlflowClient(server.url)
            experiment = client.create_experiment("artifact-upload")
            seconds: dict[str, list[float]] = {arm: [] for arm in ARMS}
            for round_ in range(rounds + 1):
                for arm, upload in ARMS.items():
                    run = client.create_run(experiment)
                    started = time.perf_counter()
                    upload(root / "saved" / "model", run.info.artifact_uri, server.url)
                    if round_:  # round 0 warms the connection pool and the server up
                        seconds[arm].append(time.perf_counter() - started)
        finally:
            stop_server(server)
    return seconds


def format_table(seconds: dict[str, list[float]]) -> str:
    """A markdown table: median and range of each arm, and the ratio to ``sequential``."""
    base = statistics.median(seconds["sequential"])
    rows = ["| arm | uploads | median s | min–max s | vs sequential |", "|---|---|---|---|---|"]
    for arm, values in seconds.items():
        median = statistics.median(values)
        rows.append(
            f"| {arm} | {len(values)} | {median:.3f} | {min(values):.3f}–{max(values):.3f} "
            f"| {median / base:.2f} |"
        )
    return "\n".join(rows)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=10, help="timed rounds (default 10)")
    parser.add_argument("--json", type=Path, help="also write the seconds here")
    args = parser.parse_args(argv)
    seconds = run_benchmark(args.rounds)
    print(format_table(seconds))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(seconds, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
