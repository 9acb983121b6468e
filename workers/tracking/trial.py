"""A trial's child run: its params, per-epoch metrics, budget artifacts, plots and models."""

from __future__ import annotations

import contextlib
import copy
import importlib
import json
import logging
import shutil
import tempfile
import time
from collections.abc import Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mlflow
import mlflow.pytorch
import numpy as np
import torch
from mlflow.entities import LoggedModel, LoggedModelOutput, LoggedModelStatus
from mlflow.models import Model, infer_signature
from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository
from mlflow.store.artifact.local_artifact_repo import LocalArtifactRepository
from mlflow.tracking import MlflowClient

import str_core
from str_core.layers import STRMixin, densify
from str_core.pruning import bake
from str_core.train import Callback, EpochMetrics, Trainer
from strsearch.spec import SearchSpec
from workers import kept_figures
from workers.progress import trial_view
from workers.tracking.common import (
    JOB_TAG,
    KIND_TAG,
    MODEL_URI_TAG,
    PARENT_TAG,
    TRIAL_TAG,
    TrialTracking,
    find_run,
    log_steps,
    spec_params,
    using_tracking_uri,
    write_csv,
)
from workers.tracking.run_marker import RunMarker

logger = logging.getLogger(__name__)


CONSTANT_METRICS = frozenset({"params", "dense_flops", "weight_decay", "s_init"})
"""Epoch metrics that never change during a trial: logged with the first epoch the tracker sends
only, so that the run still has them as metrics (for the UI's charts across trials) without
costing the server a row per epoch."""


def trial_trackers(
    config: Mapping[str, Any], trial_id: str, marker: RunMarker | None = None
) -> list[Callback]:
    """The trainer callbacks that record a trial: one :class:`TrialTracker` when the trial's
    config carries ``tracking``, none otherwise. ``marker``: the trial's run mark
    (:mod:`workers.tracking.run_marker`), where the trial has a storage folder."""
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
            marker=marker,
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
        marker: the trial's run mark; without one, the run is always looked up before it is
            created.
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
        send_seconds: float = 5.0,
        marker: RunMarker | None = None,
    ) -> None:
        self.tracking = tracking
        self.marker = marker
        self.trial_id = trial_id
        self.spec = spec
        self.weight_decay = weight_decay
        self.s_init = s_init
        self.method = method
        self.seed = seed
        self.client = MlflowClient(tracking.tracking_uri)
        self.run_id = ""  # both known once the sender thread has opened the run
        self.artifact_uri = ""
        self.run_logged = 0  # the last epoch the run had when it was opened (a resumed trial)
        self.last_logged = 0  # the last epoch queued to send
        self.send_seconds = send_seconds
        # Epoch metrics go out from one thread of our own, synchronously: MLflow's asynchronous
        # queue makes the first end of a run wait up to a second for its polling thread.
        self.sender = ThreadPoolExecutor(max_workers=1, thread_name_prefix="strsearch-mlflow")
        self.sent: list[Future[None]] = []
        self.opening: Future[None] | None = None  # opening the run, until the first epoch ends
        self.unsent: list[tuple[int, dict[str, float]]] = []
        self.unsent_params: dict[str, str] = {}  # sent with the attempt's first batch
        self.last_send = 0.0
        self.constants_kept = False

    def on_train_start(self, trainer: Trainer) -> None:
        """Open the trial's run on the sender thread, while the first epoch trains (a failure
        there is raised at the next send). The first epoch's end waits for the run, see
        :meth:`on_epoch_end`.

        The params go out with the attempt's first batch of epochs (``send_seconds`` after the
        start, or at the end of a shorter trial) rather than in a request of their own, which
        cost the server 8–9 ms of CPU beside the training (3 ms more with the epochs). Until
        then the run shows the trial's λ and ``s_init`` in its name; a trial killed before its
        first batch has neither params nor metrics, and a later attempt sends both."""
        if trainer.rank != 0:
            return
        self.opening = self.sender.submit(self._open_run)
        self.sent.append(self.opening)
        self.unsent_params = self._params()
        if self.tracking.log_models:  # the first model logging's one-off work, see below
            self.sent.append(self.sender.submit(prepare_model_logging))
        # A resumed trial starts from its checkpoint's history: epochs that had not been sent
        # when the trial stopped go out now, so the run's metrics have no gap.
        for metrics in trainer.history:
            self._keep(metrics)
        self._send()

    def _open_run(self) -> None:
        """Find the trial's run (a resumed trial continues it) or create it (sender thread).

        The first attempt of a trial with a :attr:`marker` writes the mark instead of looking
        for a run that cannot exist yet."""
        tags = {
            JOB_TAG: self.tracking.job_id,
            TRIAL_TAG: self.trial_id,
            KIND_TAG: "trial",
        }
        run = None
        if self.marker is None or self.marker.seen():
            run = find_run(self.client, self.tracking.experiment_id, tags)
        else:
            self.marker.write()
        if run is None:
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
        else:
            self.client.update_run(run.info.run_id, status="RUNNING")
            history = self.client.get_metric_history(run.info.run_id, "sparsity")
            self.run_logged = max((m.step for m in history), default=0)
        self.run_id = run.info.run_id
        self.artifact_uri = run.info.artifact_uri

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
        """Queue the epoch's metrics; send them at most every ``send_seconds``.

        The first epoch's end waits until the run is open. The tracker comes before the
        reporter among a trial's callbacks (:func:`workers.reporting.trial_callbacks`), so the
        run exists before Tune sees the trial's first report, where Tune may stop the trial.
        The job closes its children's runs after its trials have stopped; a run opened after
        that would stay ``RUNNING``.
        """
        if trainer.rank != 0:
            return
        if self.opening is not None:
            self.opening.result()  # usually done long before: an epoch outlasts two requests
            self.opening = None
        self._keep(metrics)
        if time.monotonic() - self.last_send >= self.send_seconds:
            self._send()

    def _keep(self, metrics: EpochMetrics) -> None:
        """Queue an epoch's metrics for the next send, unless it was queued already."""
        if metrics.epoch <= self.last_logged:
            return
        values = metrics.flat() | {"weight_decay": self.weight_decay}
        if self.s_init is not None:
            values["s_init"] = self.s_init
        values["target_gap"] = abs(metrics.scalars["sparsity"] - self.spec.target_sparsity)
        if self.constants_kept:
            values = {k: v for k, v in values.items() if k not in CONSTANT_METRICS}
        self.constants_kept = True
        self.unsent.append((metrics.epoch, values))
        self.last_logged = metrics.epoch

    def _send(self) -> None:
        """Hand the queued epochs to the sender thread as one batch (and raise what the sender
        thread failed with since the last send)."""
        for done in [f for f in self.sent if f.done()]:
            self.sent.remove(done)
            done.result()
        if self.unsent:
            batch, self.unsent = self.unsent, []
            params, self.unsent_params = self.unsent_params, {}
            self.sent.append(self.sender.submit(self._log_epochs, batch, params=params))
        self.last_send = time.monotonic()

    def _log_epochs(
        self,
        batch: list[tuple[int, dict[str, float]]],
        tags: Mapping[str, str] | None = None,
        params: Mapping[str, str] | None = None,
    ) -> None:
        """Log the epochs of ``batch`` that the run does not have yet, with ``tags`` and
        ``params``."""
        fresh = [(epoch, values) for epoch, values in batch if epoch > self.run_logged]
        log_steps(self.client, self.run_id, fresh, params=params, tags=tags)

    def flush(self) -> None:
        """Send what is queued and wait until every batch is logged (re-raises a failure)."""
        self._send()
        self._wait_sent()

    def _wait_sent(self) -> None:
        """Wait until every batch handed to the sender thread is logged (re-raises a failure)."""
        for sent in self.sent:
            sent.result()
        self.sent.clear()

    def on_train_end(self, trainer: Trainer, history: list[EpochMetrics]) -> None:
        """Send the last epochs, write the budget files and figures and log the models, all at
        once; then end the run: 7 requests with models, 2 without (with the embedded server,
        whose artifact folder the trial writes to directly).

        The figures are drawn on a thread of their own from the start. This thread creates the
        logged models first, so that the densified model's URI can go out as the run's tag with
        the last epochs (up to ``send_seconds`` of them) on another thread, while this one saves
        the models. The server stores the epochs while the trial saves the models and draws the
        figures, instead of after them; the drawing fits in the models' waits for the server.

        PyTorch runs on this thread alone meanwhile (:func:`one_torch_thread`)."""
        if trainer.rank != 0:
            return
        self._wait_sent()
        self.sender.shutdown()
        batch, self.unsent = self.unsent, []
        params, self.unsent_params = self.unsent_params, {}
        with (
            one_torch_thread(),
            tempfile.TemporaryDirectory(prefix="strsearch-trial-artifacts-") as tmp,
            ThreadPoolExecutor(2, thread_name_prefix="strsearch-mlflow-end") as end,
        ):
            folder = Path(tmp)
            done = [end.submit(self._write_files, folder, history)]
            models: list[PendingModel] = []
            try:
                if self.tracking.log_models:
                    models = self._create_models(trainer)
            finally:  # the last epochs are logged even when the models cannot be created
                tags = {MODEL_URI_TAG: f"models:/{models[-1].logged.model_id}"} if models else {}
                done.append(end.submit(self._log_epochs, batch, tags, params))
            if models:
                self._save_models(models, trainer)
            for future in done:  # on an error, leaving ``end`` waits for both threads
                future.result()
            self._upload(folder)
        self._finish()

    def _write_files(self, folder: Path, history: list[EpochMetrics]) -> None:
        """Write ``budget.csv``, ``budget.json``, ``budget.png`` and ``dynamics.png`` of the
        trial's last epoch and history to ``folder`` (nothing without a history)."""
        if not history:
            return
        final = history[-1]
        self._write_budget(folder, final)
        title = f"trial {self.trial_id}: {self._label()}"
        # redrawn on the previous trial's figures where it had the same layers
        kept_figures.BUDGET.save_png(final.layers, folder / "budget.png", title=title)
        kept_figures.DYNAMICS.save_png(history, folder / "dynamics.png", title=title)

    def _upload(self, folder: Path) -> None:
        """Copy the files in ``folder`` to the run's artifacts."""
        copy_artifacts(folder, self.artifact_uri, self.tracking.tracking_uri)

    def _finish(self) -> None:
        """Mark the run finished."""
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

    def _create_models(self, trainer: Trainer) -> list[PendingModel]:
        """Create the logged models of the STR model and its densified copy (``PENDING``, the
        densified one last): 2 requests, or 1 for a model without STR layers."""
        model = trainer.model.to("cpu").eval()
        # a baseline's masks are parametrizations, which cannot be pickled: log it baked
        dense = bake(densify(copy.deepcopy(model))).eval()
        has_str = any(isinstance(m, STRMixin) for m in model.modules())
        nets = (("str_model", model), ("model", dense)) if has_str else (("model", dense),)
        params = self._params()
        with using_tracking_uri(self.tracking.tracking_uri):
            return [
                PendingModel(
                    net,
                    mlflow.initialize_logged_model(
                        name=name,
                        source_run_id=self.run_id,
                        params=params,
                        experiment_id=self.tracking.experiment_id,
                    ),
                )
                for name, net in nets
            ]

    def _save_models(self, models: list[PendingModel], trainer: Trainer) -> None:
        """Save each created model with an input example and a signature, mark it ``READY``
        (``FAILED``, with the ones after it, if saving or copying fails), and link them all to
        the run as its outputs in one call: 3 requests for two models. Each model is marked
        ready on another thread while this one saves the next, and the link goes out beside the
        last one's mark.

        Each is saved as ``mlflow.pytorch.log_model`` saves a logged model: with
        ``mlflow.pytorch.save_model`` under its id into its artifact location (a local one
        directly, a remote one through a temporary folder). Through ``log_model`` the two took 8
        requests before that call, and each saved model was loaded back to check that it serves
        its input example (tests/workers/test_tracking.py checks that instead). The parts of
        ``str_core`` that loading a pickled model imports travel with it as code.
        """
        example = torch.stack([trainer.data.test[i][0] for i in range(2)])
        with (
            using_tracking_uri(self.tracking.tracking_uri),
            tempfile.TemporaryDirectory(prefix="strsearch-models-") as tmp,
            ThreadPoolExecutor(2, thread_name_prefix="strsearch-mlflow-models") as requests,
        ):
            code = copy_model_code(Path(tmp) / "code")
            sent: list[Future[Any]] = []
            for index, pending in enumerate(models):
                logged = pending.logged
                try:
                    metadata = Model(
                        artifact_path=logged.artifact_location,
                        model_uuid=logged.model_id,
                        run_id=self.run_id,
                        model_id=logged.model_id,
                    )
                    folder = local_folder(logged.artifact_location, self.tracking.tracking_uri)
                    if folder is not None:  # the embedded server's: saved in place, no copy
                        save_trial_model(pending.net, folder, example, code, metadata)
                    else:
                        staged = Path(tmp) / logged.model_id
                        save_trial_model(pending.net, staged, example, code, metadata)
                        copy_artifacts(staged, logged.artifact_location, self.tracking.tracking_uri)
                except BaseException:
                    for unsaved in models[index:]:
                        self.client.finalize_logged_model(
                            unsaved.logged.model_id, LoggedModelStatus.FAILED
                        )
                    raise
                finalize = self.client.finalize_logged_model
                sent.append(requests.submit(finalize, logged.model_id, LoggedModelStatus.READY))
            outputs = [LoggedModelOutput(m.logged.model_id, step=0) for m in models]
            sent.append(requests.submit(self.client.log_outputs, self.run_id, outputs))
            for request in sent:
                request.result()


@contextlib.contextmanager
def one_torch_thread() -> Iterator[None]:
    """Run PyTorch's operations on the calling thread only within the block, then restore the
    process's thread count.

    At a trial's end the models are copied, densified and run on a two-row input example, all
    tiny operations, while the figures' thread and the tracking server want the same cores. With
    the trial's training threads, each operation's worker threads spin at its end waiting for
    one another: the STR model's forward pass on the example took 7–37 ms of CPU there against
    1–2 ms alone."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


@dataclass(frozen=True)
class PendingModel:
    """A trial's network and the logged model created for it, not yet saved."""

    net: torch.nn.Module
    logged: LoggedModel


def save_trial_model(
    net: torch.nn.Module,
    path: Path,
    example: torch.Tensor,
    code: Path,
    metadata: Model | None = None,
) -> None:
    """Save ``net`` to the folder ``path`` as ``mlflow.pytorch`` saves a model: pickled, with
    ``example`` as its input example, the signature of its output on it, the pinned
    :func:`model_requirements` and ``code`` (:func:`copy_model_code`). ``metadata`` is the
    ``MLmodel`` to fill in (a logged model's ids); a fresh one by default."""
    with torch.no_grad():
        output = net(example)
    mlflow.pytorch.save_model(
        net,
        str(path),
        mlflow_model=metadata,
        signature=infer_signature(example.numpy(), output.numpy()),
        input_example=example.numpy(),
        pip_requirements=model_requirements(),
        code_paths=[str(code)],
        # torch.export cannot trace STR's data-dependent threshold; pickle it
        serialization_format="pickle",
    )


UPLOAD_THREADS = 8
"""How many files :func:`copy_artifacts` sends to a remote artifact store at once."""


def local_folder(location: str, tracking_uri: str) -> Path | None:
    """The folder of the artifact ``location`` when it is on this machine's file system (the
    embedded server's artifact root), ``None`` for a remote one."""
    repository = get_artifact_repository(location, tracking_uri=tracking_uri)
    if isinstance(repository, LocalArtifactRepository):
        return Path(repository.artifact_dir)
    return None


def copy_artifacts(folder: Path, location: str, tracking_uri: str) -> None:
    """Copy the files in ``folder`` (and its subfolders) to the artifact ``location`` of a run or
    logged model.

    Knowing the location saves the request that ``MlflowClient.log_artifacts`` makes to look it
    up. With the embedded server the location is a local folder and the files are copied there
    directly. A remote location (a proxied ``mlflow-artifacts:`` one, object storage) takes one
    upload per file; a model is about twenty files, which MLflow would send one after the other,
    so they go :data:`UPLOAD_THREADS` at a time.
    """
    repository = get_artifact_repository(location, tracking_uri=tracking_uri)
    if isinstance(repository, LocalArtifactRepository):
        repository.log_artifacts(str(folder))  # type: ignore[no-untyped-call]
        return

    def upload(path: Path) -> None:
        parent = path.parent.relative_to(folder).as_posix()
        repository.log_artifact(str(path), None if parent == "." else parent)  # type: ignore[no-untyped-call]

    files = sorted(p for p in folder.rglob("*") if p.is_file())
    with ThreadPoolExecutor(max(1, min(UPLOAD_THREADS, len(files)))) as pool:
        for done in [pool.submit(upload, path) for path in files]:
            done.result()


def model_requirements() -> list[str]:
    """The pip requirements a logged model pins: this process's torch and numpy."""
    return [f"torch=={torch.__version__.split('+')[0]}", f"numpy=={np.__version__}"]


def prepare_model_logging() -> None:
    """Do now the parts of the first model logging of a process that do not need the model.

    A trial calls this on its sender thread when it starts, so that these one-off costs are paid
    while it trains, not after its last epoch (a Ray trial is a fresh process each time):

    - MLflow checks the pinned requirements against the installed packages before it saves a
      model; the first check in a process maps every installed module to its distribution (it
      reads the metadata of every installed package: 0.3–0.4 s here);
    - creating a logged model resolves the run context, whose git lookup imports GitPython
      (about 0.16 s); MLflow caches the result for the process;
    - saving a model imports ``mlflow.pyfunc`` (about 0.1 s).

    It only saves time: where this MLflow does not do these, or they fail here, the model
    logging does the same work itself later.
    """
    try:
        from mlflow.utils.requirements_utils import warn_dependency_requirement_mismatches

        warn_dependency_requirement_mismatches(model_requirements())
        importlib.import_module("mlflow.pyfunc")
        from mlflow.tracking.context.registry import resolve_tags

        resolve_tags()
    except Exception:  # an optimisation must never fail the trial
        logger.debug("preparing model logging failed", exc_info=True)


MODEL_CODE = ("__init__.py", "config.py", "budgets.py", "layers", "models")
"""The parts of ``str_core`` that loading a pickled model imports (the package, its configs and
the budget checks they use, the layers and the model registry); data, training and metrics code
is not needed to load a model."""


def copy_model_code(dest: Path) -> Path:
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
