"""A trial's child run: its params, per-epoch metrics, budget artifacts, plots and models."""

from __future__ import annotations

import copy
import json
import logging
import shutil
import tempfile
import time
from collections.abc import Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import mlflow
import mlflow.pytorch
import numpy as np
import torch
from mlflow.entities import LoggedModelOutput
from mlflow.models import infer_signature
from mlflow.tracking import MlflowClient

import str_core
from str_core.layers import STRMixin, densify
from str_core.pruning import bake
from str_core.train import Callback, EpochMetrics, Trainer
from strsearch.spec import SearchSpec
from workers import plots
from workers.progress import trial_view
from workers.tracking.common import (
    JOB_TAG,
    KIND_TAG,
    MODEL_URI_TAG,
    PARENT_TAG,
    TRIAL_TAG,
    TrialTracking,
    find_run,
    log_params,
    log_steps,
    spec_params,
    write_csv,
)

logger = logging.getLogger(__name__)


def trial_trackers(config: Mapping[str, Any], trial_id: str) -> list[Callback]:
    """The trainer callbacks that record a trial: one :class:`TrialTracker` when the trial's
    config carries ``tracking``, none otherwise."""
    if not config.get("tracking"):
        return []
    spec = SearchSpec.model_validate(config["spec"])
    tracking = TrialTracking.from_dict(config["tracking"])
    view = trial_view(config)
    s_init = view.get("s_init")
    return [
        TrialTracker(
            tracking,
            trial_id,
            spec,
            float(view["weight_decay"]),
            None if s_init is None else float(s_init),
            method=str(view.get("method") or spec.method),
            seed=view.get("seed"),
        )
    ]


class TrialTracker(Callback):
    """Trainer callback logging one trial to its child run (rank 0 of the trial only).

    Args:
        tracking: where the job's runs are.
        trial_id: Tune's trial id (names and tags the run).
        spec: the job's spec (logged as params).
        weight_decay: λ of the trial.
        s_init: ``s_init`` of the trial (``None`` for a pruning baseline).
        method: what the trial trains (``str``, an ablation or a baseline).
        seed: the training seed of a comparison trial.
        send_seconds: epochs are sent together, at most one request this often (and all that
            is left at the end), so that short epochs do not each cost the server a request.
    """

    def __init__(
        self,
        tracking: TrialTracking,
        trial_id: str,
        spec: SearchSpec,
        weight_decay: float,
        s_init: float | None,
        *,
        method: str = "str",
        seed: int | None = None,
        send_seconds: float = 2.0,
    ) -> None:
        self.tracking = tracking
        self.trial_id = trial_id
        self.spec = spec
        self.weight_decay = weight_decay
        self.s_init = s_init
        self.method = method
        self.seed = seed
        self.client = MlflowClient(tracking.tracking_uri)
        self.run_id = ""
        self.last_logged = 0
        self.send_seconds = send_seconds
        # Epoch metrics go out from one thread of our own, synchronously: MLflow's asynchronous
        # queue makes the first end of a run wait up to a second for its polling thread.
        self.sender = ThreadPoolExecutor(max_workers=1, thread_name_prefix="strsearch-mlflow")
        self.sent: list[Future[None]] = []
        self.unsent: list[tuple[int, dict[str, float]]] = []
        self.last_send = 0.0

    def on_train_start(self, trainer: Trainer) -> None:
        if trainer.rank != 0:
            return
        tags = {
            JOB_TAG: self.tracking.job_id,
            TRIAL_TAG: self.trial_id,
            KIND_TAG: "trial",
        }
        run_id = find_run(self.client, self.tracking.experiment_id, tags)
        if run_id is None:
            run = self.client.create_run(
                self.tracking.experiment_id,
                run_name=f"trial-{self.trial_id} {self._label()}",
                tags={
                    **tags,
                    PARENT_TAG: self.tracking.parent_run_id,
                    "strsearch.target": f"{self.spec.target_sparsity:g}",
                    "strsearch.method": self.method,
                },
            )
            run_id = run.info.run_id
        else:
            self.client.update_run(run_id, status="RUNNING")
            history = self.client.get_metric_history(run_id, "sparsity")
            self.last_logged = max((m.step for m in history), default=0)
        self.run_id = run_id
        if self.tracking.log_models:
            self.sent.append(self.sender.submit(prepare_model_logging))
        log_params(self.client, run_id, self._params())
        # A resumed trial starts from its checkpoint's history: epochs that had not been sent
        # when the trial stopped go out now, so the run's metrics have no gap.
        for metrics in trainer.history:
            self._keep(metrics)
        self._send()

    def _label(self) -> str:
        """``λ=… s=…`` of a search trial; ``<method> seed=… …`` of a comparison trial."""
        label = f"λ={self.weight_decay:.4g}"
        if self.s_init is not None:
            label += f" s={self.s_init:g}"
        if self.seed is not None:
            label = f"{self.method} seed={self.seed} {label}"
        return label

    def _params(self) -> dict[str, str]:
        """The trial's params: the spec's, λ, ``s_init``, method, seed and the trial id."""
        params = spec_params(self.spec) | {
            "weight_decay": f"{self.weight_decay:g}",
            "trial_id": self.trial_id,
            "trial_method": self.method,
        }
        if self.s_init is not None:
            params["s_init"] = f"{self.s_init:g}"
        if self.seed is not None:
            params["trial_seed"] = str(self.seed)
        return params

    def on_epoch_end(self, trainer: Trainer, metrics: EpochMetrics) -> None:
        if trainer.rank != 0:
            return
        self._keep(metrics)
        if time.monotonic() - self.last_send >= self.send_seconds:
            self._send()

    def _keep(self, metrics: EpochMetrics) -> None:
        """Queue an epoch's metrics for the next send, unless the run already has it."""
        if metrics.epoch <= self.last_logged:
            return
        values = metrics.flat() | {"weight_decay": self.weight_decay}
        if self.s_init is not None:
            values["s_init"] = self.s_init
        values["target_gap"] = abs(metrics.scalars["sparsity"] - self.spec.target_sparsity)
        self.unsent.append((metrics.epoch, values))
        self.last_logged = metrics.epoch

    def _send(self) -> None:
        """Hand the queued epochs to the sender thread as one batch."""
        if self.unsent:
            batch, self.unsent = self.unsent, []
            self.sent.append(self.sender.submit(log_steps, self.client, self.run_id, batch))
        self.last_send = time.monotonic()

    def flush(self) -> None:
        """Send what is queued and wait until every batch is logged (re-raises a failure)."""
        self._send()
        for sent in self.sent:
            sent.result()
        self.sent.clear()

    def on_train_end(self, trainer: Trainer, history: list[EpochMetrics]) -> None:
        if trainer.rank != 0:
            return
        self.flush()
        self.sender.shutdown()
        final = history[-1] if history else None
        with tempfile.TemporaryDirectory(prefix="strsearch-trial-artifacts-") as tmp:
            folder = Path(tmp)
            if final is not None:
                self._write_budget(folder, final)
                title = f"trial {self.trial_id}: {self._label()}"
                budget = plots.budget_figure(final.layers, title=title)
                plots.save_png(budget, folder / "budget.png")
                dynamics = plots.dynamics_figure(history, title=title)
                plots.save_png(dynamics, folder / "dynamics.png")
            self.client.log_artifacts(self.run_id, str(folder))
        if self.tracking.log_models:
            self._log_models(trainer)
        self.client.set_terminated(self.run_id, "FINISHED")

    def _write_budget(self, folder: Path, final: EpochMetrics) -> None:
        rows = [
            [name, layer.params, layer.nonzero, layer.sparsity, layer.threshold]
            for name, layer in final.layers.items()
        ]
        header = ["layer", "params", "nonzero", "sparsity", "threshold"]
        write_csv(folder / "budget.csv", header, rows)
        table = [dict(zip(header, row, strict=True)) for row in rows]
        summary = {"epoch": final.epoch, "scalars": final.scalars, "layers": table}
        (folder / "budget.json").write_text(json.dumps(summary, indent=1), encoding="utf-8")

    def _log_models(self, trainer: Trainer) -> None:
        """Log the STR model and its densified copy, with an input example and a signature.

        Each is created as a logged model of this run and saved by its id with no active run
        (with one, ``log_model`` fetches the history of every metric of the run to copy those at
        its step), then both are linked to the run as its outputs in one call. The parts of
        ``str_core`` that loading a pickled model imports travel with it as code.
        """
        model = trainer.model.to("cpu").eval()
        example = torch.stack([trainer.data.test[i][0] for i in range(2)])
        with torch.no_grad():
            output = model(example)
        signature = infer_signature(example.numpy(), output.numpy())
        # a baseline's masks are parametrizations, which cannot be pickled: log it baked
        dense = bake(densify(copy.deepcopy(model))).eval()
        has_str = any(isinstance(m, STRMixin) for m in model.modules())
        nets = (("str_model", model), ("model", dense)) if has_str else (("model", dense),)
        requirements = model_requirements()
        params = self._params()
        uris, outputs = {}, []
        mlflow.set_tracking_uri(self.tracking.tracking_uri)
        with tempfile.TemporaryDirectory(prefix="strsearch-model-code-") as tmp:
            code = [str(_copy_model_code(Path(tmp)))]
            for name, net in nets:
                logged = mlflow.initialize_logged_model(
                    name=name,
                    source_run_id=self.run_id,
                    params=params,
                    experiment_id=self.tracking.experiment_id,
                )
                info = mlflow.pytorch.log_model(
                    net,
                    name=name,
                    model_id=logged.model_id,
                    signature=signature,
                    input_example=example.numpy(),
                    pip_requirements=requirements,
                    code_paths=code,
                    # torch.export cannot trace STR's data-dependent threshold; pickle it
                    serialization_format="pickle",
                )
                uris[name] = info.model_uri
                outputs.append(LoggedModelOutput(logged.model_id, step=0))
        self.client.log_outputs(self.run_id, outputs)
        self.client.set_tag(self.run_id, MODEL_URI_TAG, uris["model"])


def model_requirements() -> list[str]:
    """The pip requirements a logged model pins: this process's torch and numpy."""
    return [f"torch=={torch.__version__.split('+')[0]}", f"numpy=={np.__version__}"]


def prepare_model_logging() -> None:
    """Do now the part of the first model logging of a process that does not need the model.

    Before it saves a model, MLflow checks the pinned requirements against the installed
    packages, and the first check in a process maps every installed module to its distribution
    (it reads the metadata of every installed package: 0.3–0.4 s here). A trial calls this on
    its sender thread when it starts, so the map is built while it trains, not after its last
    epoch. It only saves time: where this MLflow has no such check, or the check fails, the
    model logging does the same work itself later.
    """
    try:
        from mlflow.utils.requirements_utils import warn_dependency_requirement_mismatches

        warn_dependency_requirement_mismatches(model_requirements())
    except Exception:  # an optimisation must never fail the trial
        logger.debug("preparing model logging failed", exc_info=True)


MODEL_CODE = ("__init__.py", "config.py", "budgets.py", "layers", "models")
"""The parts of ``str_core`` that loading a pickled model imports (the package, its configs and
the budget checks they use, the layers and the model registry); data, training and metrics code
is not needed to load a model."""


def _copy_model_code(dest: Path) -> Path:
    """Copy the :data:`MODEL_CODE` parts of ``str_core`` to ``dest/str_core`` (no bytecode)."""
    source = Path(str_core.__file__).parent
    package = dest / "str_core"
    package.mkdir(parents=True)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for part in MODEL_CODE:
        if (source / part).is_dir():
            shutil.copytree(source / part, package / part, ignore=ignore)
        else:
            shutil.copy2(source / part, package / part)
    return package
