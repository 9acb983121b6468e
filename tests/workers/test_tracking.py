"""MLflow recording of a real search against a real tracking server (the session fixture)."""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import mlflow
import numpy as np
import pyarrow.fs  # type: ignore[import-untyped]
import pytest
import torch
from mlflow.entities import LoggedModelStatus
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient
from mlflow.utils import rest_utils

from str_core.layers import STR_LAYER_TYPES
from str_core.train import Callback, EpochMetrics, Trainer, build_run
from str_core.train.callbacks import LayerSnapshot
from strsearch.spec import SearchSpec
from workers import run_search
from workers.cpus import resolve_cpus
from workers.mlflow_server import LocalServer, start_server, stop_server
from workers.tracking import (
    CONSTANT_METRICS,
    JOB_TAG,
    KIND_TAG,
    MAX_METRICS_PER_BATCH,
    MODEL_URI_TAG,
    PARENT_TAG,
    TRIAL_TAG,
    TrackingSettings,
    TrialTracker,
    TrialTracking,
    find_run,
    log_metrics,
    log_steps,
    model_name,
    spec_params,
)
from workers.tracking import trial as trial_module
from workers.tracking.common import using_tracking_uri
from workers.tracking.run_marker import MARK_NAME, RunMarker
from workers.tracking.trial import copy_model_code
from workers.trial_config import trial_config

# digits_cnn, 4 epochs: λ 1.3e-2 gives ~54%, 4.4e-2 ~89%; a ±5% band around 70% lands in a few
SMALL = {
    "model": "digits_cnn",
    "dataset": "digits",
    "target_sparsity": 0.7,
    "tolerance": 0.05,
    "training": {"epochs": 4},
    "search": {"max_trials": 6, "parallel_trials": 2, "lambda_min": 1e-3, "lambda_max": 5e-2},
}


def _experiment() -> str:
    return f"test-{uuid.uuid4().hex[:8]}"


def _runs(client: MlflowClient, experiment: str) -> list[Any]:
    found = client.get_experiment_by_name(experiment)
    assert found is not None, f"no experiment {experiment}"
    return list(client.search_runs([found.experiment_id], max_results=1000))


def _artifacts(client: MlflowClient, run_id: str, path: str = "") -> set[str]:
    out: set[str] = set()
    for item in client.list_artifacts(run_id, path):
        if item.is_dir:
            out |= _artifacts(client, run_id, item.path)
        else:
            out.add(item.path)
    return out


@pytest.mark.slow
@pytest.mark.usefixtures("local_ray")
# pyfunc's wrapper of a pytorch model has no type hints to validate its input by
@pytest.mark.filterwarnings("ignore:.*Any type hint is inferred:UserWarning")
def test_a_search_records_parent_and_trial_runs(mlflow_server: LocalServer, tmp_path: Path) -> None:
    spec = SearchSpec.parse(SMALL)
    experiment = _experiment()
    settings = TrackingSettings(tracking_uri=mlflow_server.url, experiment=experiment)
    result = run_search(spec, storage_path=tmp_path, tracking=settings, job_id="job-1")
    client = MlflowClient(mlflow_server.url)
    runs = _runs(client, experiment)

    parents = [r for r in runs if r.data.tags.get(KIND_TAG) == "job"]
    children = [r for r in runs if r.data.tags.get(KIND_TAG) == "trial"]
    assert len(parents) == 1 and len(runs) == 1 + len(children)
    parent = parents[0]
    assert parent.data.tags[JOB_TAG] == "job-1"
    assert parent.info.status == "FINISHED"
    # the spec its trials ran: the CPUs left to the cluster resolved (workers/cpus.py)
    assert parent.data.params == spec_params(resolve_cpus(spec))
    assert parent.data.params["resources.cpus_per_trial"] == "1.0"  # 2 CPUs, 2 trials at once
    assert parent.data.metrics["trials"] == len(result.trials)
    assert parent.data.metrics["total_epochs"] == result.total_epochs
    assert parent.data.metrics["reached"] == float(result.reached)
    assert result.mlflow_run_url is not None and parent.info.run_id in result.mlflow_run_url
    assert {"trials.csv", "result.json", "accuracy_vs_sparsity.png", "accuracy_vs_flops.png"} <= (
        _artifacts(client, parent.info.run_id)
    )
    assert parent.data.tags["strsearch.reached"] == str(result.reached).lower()
    assert result.best is not None and parent.data.tags["strsearch.best_trial"] == (
        result.best.trial_id
    )
    # progress: one point per trial start and end, all sent before the run finished
    for key in ("trials_started", "trials_finished"):
        progress = client.get_metric_history(parent.info.run_id, key)
        assert len(progress) == 2 * len(result.trials)
        assert max(m.value for m in progress) == len(result.trials)

    # one child run per trial, nested under the parent, with its own settings and history
    by_trial = {r.data.tags[TRIAL_TAG]: r for r in children}
    assert sorted(by_trial) == sorted(t.trial_id for t in result.trials)
    for trial in result.trials:
        run = by_trial[trial.trial_id]
        assert run.data.tags[PARENT_TAG] == parent.info.run_id
        assert run.data.tags[JOB_TAG] == "job-1"
        assert run.info.status == "FINISHED"
        assert trial.path is not None and (Path(trial.path) / MARK_NAME).is_file()  # its run mark
        assert float(run.data.params["weight_decay"]) == pytest.approx(trial.weight_decay)
        assert run.data.params["training.epochs"] == "4"
        history = client.get_metric_history(run.info.run_id, "sparsity")
        assert [m.step for m in history] == [1, 2, 3, 4]
        assert history[-1].value == pytest.approx(trial.sparsity)
        for layer, value in trial.budget.items():
            assert run.data.metrics[f"sparsity/{layer}"] == pytest.approx(value)
        assert f"threshold/{next(iter(trial.thresholds))}" in run.data.metrics
        assert {"val_acc", "test_acc", "flops", "weight_decay", "target_gap"} <= set(
            run.data.metrics
        )
        files = _artifacts(client, run.info.run_id)
        assert {"budget.csv", "budget.json", "budget.png", "dynamics.png"} <= files
        budget = json.loads(
            Path(
                client.download_artifacts(run.info.run_id, "budget.json", str(tmp_path))
            ).read_text()
        )
        assert {row["layer"]: row["sparsity"] for row in budget["layers"]} == pytest.approx(
            trial.budget
        )

    # the trial models load back: the STR model and its densified twin give the same outputs
    best = result.best
    assert best is not None
    best_run = by_trial[best.trial_id]
    logged = {
        m.name: m
        for m in client.search_logged_models([best_run.info.experiment_id])
        if m.source_run_id == best_run.info.run_id
    }
    mlflow.set_tracking_uri(mlflow_server.url)
    models = {name: mlflow.pytorch.load_model(m.model_uri) for name, m in logged.items()}
    assert set(models) == {"str_model", "model"}
    assert any(isinstance(m, STR_LAYER_TYPES) for m in models["str_model"].modules())
    assert not any(isinstance(m, STR_LAYER_TYPES) for m in models["model"].modules())
    example = np.random.default_rng(0).random((3, 1, 8, 8), dtype=np.float32)
    with torch.no_grad():
        a = models["str_model"].eval()(torch.from_numpy(example))
        b = models["model"].eval()(torch.from_numpy(example))
    assert torch.allclose(a, b, atol=1e-5)
    info = mlflow.models.get_model_info(logged["model"].model_uri)
    assert info.signature is not None and info.saved_input_example_info is not None
    # both serve through pyfunc on their saved input example (log_model only warns if not)
    local = {
        name: mlflow.artifacts.download_artifacts(m.model_uri, dst_path=str(tmp_path / name))
        for name, m in logged.items()
    }
    for name, folder in local.items():
        saved = mlflow.models.Model.load(folder).load_input_example(folder)
        assert saved is not None
        with torch.no_grad():
            direct = models[name](torch.from_numpy(np.asarray(saved))).numpy()
        served = mlflow.pyfunc.load_model(folder).predict(saved)
        assert np.allclose(np.asarray(served), direct, atol=1e-5)
    # the model travels with the str_core code it needs: it loads where str_core is not installed
    standalone = _outputs_without_str_core(Path(local["model"]), example, tmp_path)
    assert np.allclose(standalone, b.numpy(), atol=1e-5)

    # a landed search registers its best model, tagged with what it achieved
    assert result.reached, [(t.weight_decay, t.sparsity) for t in result.trials]
    assert result.registered_model is not None
    name, version = result.registered_model.split("/")
    assert name == model_name(spec)
    registered = client.get_model_version(name, version)
    assert float(registered.tags["sparsity"]) == pytest.approx(best.sparsity)
    assert float(registered.tags["test_acc"]) == pytest.approx(best.test_acc)
    assert float(registered.tags["flops"]) == pytest.approx(best.flops, rel=1e-6)
    assert registered.tags["job_id"] == "job-1"


STANDALONE = """
import sys
sys.meta_path = [f for f in sys.meta_path if "editable" not in repr(f).lower()]
sys.path = [p for p in sys.path if p and p.rstrip("/") != sys.argv[1]]
sys.modules.pop("str_core", None)
import importlib.util
assert importlib.util.find_spec("str_core") is None, "str_core is still importable"
import mlflow.pytorch, numpy as np, torch
model = mlflow.pytorch.load_model(sys.argv[2]).eval()
with torch.no_grad():
    out = model(torch.from_numpy(np.load(sys.argv[3])))
np.save(sys.argv[4], out.numpy())
"""


def _outputs_without_str_core(model_dir: Path, example: np.ndarray, tmp: Path) -> np.ndarray:
    """Run the logged model in a fresh interpreter that cannot import the checkout's str_core."""
    checkout = str(Path(__file__).resolve().parents[2])
    np.save(tmp / "in.npy", example)
    args = [str(model_dir), str(tmp / "in.npy"), str(tmp / "out.npy")]
    done = subprocess.run(
        [sys.executable, "-c", STANDALONE, checkout, *args],
        cwd=tmp,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    out: np.ndarray = np.load(tmp / "out.npy")
    return out


def test_metrics_are_split_into_batches_within_the_limit(mlflow_server: LocalServer) -> None:
    client = MlflowClient(mlflow_server.url)
    experiment = client.create_experiment(_experiment())
    run = client.create_run(experiment)
    values = {f"sparsity/layer{i}": i / 2500 for i in range(2500)}
    values |= {"nan": float("nan"), "flag": True}  # dropped: not finite numbers
    tags = {f"tag{i}": str(i) for i in range(100)}  # sent with the first batch
    log_metrics(client, run.info.run_id, values, step=3, tags=tags)
    logged = client.get_run(run.info.run_id).data
    assert len(values) - 2 > MAX_METRICS_PER_BATCH
    assert logged.metrics == {k: v for k, v in values.items() if k not in ("nan", "flag")}
    assert tags.items() <= logged.tags.items()
    log_metrics(client, run.info.run_id, {}, step=4, tags={"only": "a tag"})
    assert client.get_run(run.info.run_id).data.tags["only"] == "a tag"
    with pytest.raises(ValueError, match="at most 100 tags"):
        log_metrics(client, run.info.run_id, {}, step=4, tags=tags | {"one": "too many"})


def test_params_tags_and_metrics_share_as_few_batches_as_the_limits_allow(
    mlflow_server: LocalServer,
) -> None:
    client = _CountingClient(mlflow_server.url)
    run = client.create_run(client.create_experiment(_experiment()))
    params = {f"param{i}": str(i) for i in range(250)}  # 100 per request at most
    tags = {f"tag{i}": str(i) for i in range(100)}
    steps = [(step, {f"m{i}": float(i) for i in range(1300)}) for step in (1, 2)]
    log_steps(client, run.info.run_id, steps, params=params, tags=tags)
    # 2600 metrics + 250 params + 100 tags = 2950 entities: 3 requests of at most 1000
    assert client.batches == 3
    logged = client.get_run(run.info.run_id).data
    assert logged.params == params and tags.items() <= logged.tags.items()
    for name in ("m0", "m1299"):
        assert [m.step for m in client.get_metric_history(run.info.run_id, name)] == [1, 2]
    log_steps(client, run.info.run_id, [], params={"only": "a param"})
    assert client.batches == 4 and client.get_run(run.info.run_id).data.params["only"] == "a param"


def test_spec_params_are_flat_strings() -> None:
    spec = SearchSpec.parse({**SMALL, "search": {"s_init": [-5, -3]}})
    params = spec_params(spec)
    assert params["search.s_init"] == "[-5.0, -3.0]"
    assert params["training.epochs"] == "4"
    assert params["data_root"] == "null"
    assert all(isinstance(v, str) for v in params.values())


class _CountingClient(MlflowClient):
    """An ``MlflowClient`` that counts its ``log_batch`` and ``search_runs`` requests, and the
    params of each batch."""

    def __init__(self, uri: str) -> None:
        super().__init__(uri)
        self.batches = 0
        self.searches = 0
        self.batch_params: list[int] = []

    def log_batch(self, *args: Any, **kwargs: Any) -> Any:
        self.batches += 1
        self.batch_params.append(len(kwargs.get("params") or ()))
        return super().log_batch(*args, **kwargs)

    def search_runs(self, *args: Any, **kwargs: Any) -> Any:
        self.searches += 1
        return super().search_runs(*args, **kwargs)


def _epoch(epoch: int) -> EpochMetrics:
    layer = LayerSnapshot(sparsity=0.1 * epoch, threshold=0.01 * epoch, nonzero=90, params=100)
    return EpochMetrics(epoch, {"sparsity": 0.1 * epoch, "test_acc": 0.5}, {"conv": layer})


def _tracker(server: LocalServer, experiment_id: str, send_seconds: float) -> TrialTracker:
    client = MlflowClient(server.url)
    parent = client.create_run(experiment_id, tags={JOB_TAG: "job-1", KIND_TAG: "job"})
    tracking = TrialTracking(server.url, experiment_id, "job-1", parent.info.run_id)
    spec = SearchSpec.parse(SMALL)
    tracker = TrialTracker(tracking, "t1", spec, 1e-3, -5.0, send_seconds=send_seconds)
    tracker.client = _CountingClient(server.url)
    return tracker


def _steps(tracker: TrialTracker) -> list[int]:
    history = MlflowClient(tracker.tracking.tracking_uri).get_metric_history(
        tracker.run_id, "sparsity"
    )
    return sorted(m.step for m in history)


def test_epochs_are_sent_together_and_a_resumed_trial_fills_its_gap(
    mlflow_server: LocalServer,
) -> None:
    experiment_id = MlflowClient(mlflow_server.url).create_experiment(_experiment())
    # every epoch on its own
    each = _tracker(mlflow_server, experiment_id, send_seconds=0.0)
    each.on_train_start(SimpleNamespace(rank=0, history=[]))  # type: ignore[arg-type]
    each.flush()  # the run, opened by the sender thread
    before = each.client.batches  # type: ignore[attr-defined]
    for epoch in range(1, 4):
        each.on_epoch_end(SimpleNamespace(rank=0), _epoch(epoch))  # type: ignore[arg-type]
    each.flush()
    assert each.client.batches - before == 3  # type: ignore[attr-defined]
    assert _steps(each) == [1, 2, 3]
    # a trial that stops after epoch 3 with epoch 3 still queued: the run has 1 and 2 only
    first = _tracker(mlflow_server, experiment_id, send_seconds=3600.0)
    first.trial_id = "t2"
    first.on_train_start(SimpleNamespace(rank=0, history=[]))  # type: ignore[arg-type]
    first.flush()
    before = first.client.batches  # type: ignore[attr-defined]
    for epoch in (1, 2):
        first.on_epoch_end(SimpleNamespace(rank=0), _epoch(epoch))  # type: ignore[arg-type]
    first.flush()
    first.on_epoch_end(SimpleNamespace(rank=0), _epoch(3))  # type: ignore[arg-type]
    assert first.client.batches - before == 1  # type: ignore[attr-defined]  # 1 and 2 together
    assert _steps(first) == [1, 2]
    # resumed from the checkpoint of epoch 3: the same run, epoch 3 sent first, then 4 and 5
    resumed = _tracker(mlflow_server, experiment_id, send_seconds=3600.0)
    resumed.tracking = first.tracking
    resumed.trial_id = "t2"
    history = [_epoch(e) for e in (1, 2, 3)]
    resumed.on_train_start(SimpleNamespace(rank=0, history=history))  # type: ignore[arg-type]
    for epoch in (4, 5):
        resumed.on_epoch_end(SimpleNamespace(rank=0), _epoch(epoch))  # type: ignore[arg-type]
    resumed.flush()
    assert resumed.run_id == first.run_id
    assert _steps(resumed) == [1, 2, 3, 4, 5]
    history = MlflowClient(mlflow_server.url).get_metric_history(resumed.run_id, "test_acc")
    assert sorted(m.step for m in history) == [1, 2, 3, 4, 5]  # epochs 1 and 2 sent once


def test_params_go_with_the_first_batch_of_each_attempt(mlflow_server: LocalServer) -> None:
    experiment_id = MlflowClient(mlflow_server.url).create_experiment(_experiment())
    first = _tracker(mlflow_server, experiment_id, send_seconds=3600.0)
    first.on_train_start(SimpleNamespace(rank=0, history=[]))  # type: ignore[arg-type]
    first.flush()
    client = MlflowClient(mlflow_server.url)
    assert first.client.batches == 0  # type: ignore[attr-defined]  # no request of their own
    assert client.get_run(first.run_id).data.params == {}
    for epoch in (1, 2):
        first.on_epoch_end(SimpleNamespace(rank=0), _epoch(epoch))  # type: ignore[arg-type]
        first.flush()
    params = client.get_run(first.run_id).data.params
    assert params == first._params() and params["weight_decay"] == "0.001"
    assert first.client.batch_params == [len(params), 0]  # type: ignore[attr-defined]
    # a later attempt sends them again (the same values) with its first batch, its history
    again = _tracker(mlflow_server, experiment_id, send_seconds=3600.0)
    again.tracking = first.tracking
    history = [_epoch(e) for e in (1, 2, 3)]
    again.on_train_start(SimpleNamespace(rank=0, history=history))  # type: ignore[arg-type]
    again.flush()
    assert again.run_id == first.run_id
    assert again.client.batch_params == [len(params)]  # type: ignore[attr-defined]
    assert client.get_run(first.run_id).data.params == params
    assert _steps(again) == [1, 2, 3]


def test_a_first_attempt_marks_its_trial_instead_of_looking_for_its_run(
    mlflow_server: LocalServer, tmp_path: Path
) -> None:
    experiment_id = MlflowClient(mlflow_server.url).create_experiment(_experiment())
    marker = RunMarker.in_folder(pyarrow.fs.LocalFileSystem(), str(tmp_path / "trial"))
    start = SimpleNamespace(rank=0, history=[])
    first = _tracker(mlflow_server, experiment_id, send_seconds=3600.0)
    first.marker = marker
    first.on_train_start(start)  # type: ignore[arg-type]
    first.flush()
    assert first.client.searches == 0 and marker.seen()  # type: ignore[attr-defined]
    # a later attempt of the trial finds the mark, looks its run up and continues it
    again = _tracker(mlflow_server, experiment_id, send_seconds=3600.0)
    again.tracking, again.marker = first.tracking, marker
    again.on_train_start(start)  # type: ignore[arg-type]
    again.flush()
    assert again.client.searches == 1 and again.run_id == first.run_id  # type: ignore[attr-defined]
    # an attempt that cannot write its mark fails before it creates a run
    (tmp_path / "a-file").write_text("not a folder")
    blocked = _tracker(mlflow_server, experiment_id, send_seconds=3600.0)
    blocked.trial_id = "t-blocked"
    blocked.marker = RunMarker.in_folder(pyarrow.fs.LocalFileSystem(), str(tmp_path / "a-file"))

    def start_and_flush() -> None:  # the failure surfaces at the first look at the sender thread
        blocked.on_train_start(start)  # type: ignore[arg-type]
        blocked.flush()

    with pytest.raises(FileExistsError, match="a-file"):
        start_and_flush()
    tags = {JOB_TAG: "job-1", TRIAL_TAG: "t-blocked", KIND_TAG: "trial"}
    assert find_run(MlflowClient(mlflow_server.url), experiment_id, tags) is None


def test_the_run_is_open_when_the_first_epoch_ends(mlflow_server: LocalServer) -> None:
    # the run is opened on the sender thread while the first epoch trains; a callback after the
    # tracker (the Tune reporter, whose report is where Tune stops a trial) finds it open
    spec = SearchSpec.parse({**SMALL, "training": {"epochs": 1}})
    experiment_id = MlflowClient(mlflow_server.url).create_experiment(_experiment())
    tracking = TrialTracking(mlflow_server.url, experiment_id, "job-1", "parent-run", False)
    tags = {JOB_TAG: "job-1", TRIAL_TAG: "t-open", KIND_TAG: "trial"}
    seen: list[str] = []

    class Reporter(Callback):
        def on_epoch_end(self, trainer: Trainer, metrics: EpochMetrics) -> None:
            run = find_run(MlflowClient(mlflow_server.url), experiment_id, tags)
            seen.append("missing" if run is None else run.info.status)

    class SlowToOpen(TrialTracker):
        def _open_run(self) -> None:
            time.sleep(2.0)  # a busy server: the first epoch ends before the run is open
            super()._open_run()

    trial = trial_config(spec, weight_decay=1e-3, s_init=-5.0)
    run = build_run(trial.model, trial.data, trial.train, trial.str_config)
    tracker = SlowToOpen(tracking, "t-open", spec, 1e-3, -5.0)
    Trainer(run.model, trial.train, run.data, callbacks=[tracker, Reporter()]).fit()
    assert seen == ["RUNNING"]


def test_a_run_that_cannot_be_opened_fails_the_trial_by_its_first_epoch(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        nobody = f"http://127.0.0.1:{probe.getsockname()[1]}"
    tracking = TrialTracking(nobody, "0", "job-1", "parent-run")
    spec = SearchSpec.parse(SMALL)
    tracker = TrialTracker(tracking, "t1", spec, 1e-3, -5.0, send_seconds=60.0)

    def start_and_train_an_epoch() -> None:
        tracker.on_train_start(SimpleNamespace(rank=0, history=[]))  # type: ignore[arg-type]
        tracker.on_epoch_end(SimpleNamespace(rank=0), _epoch(1))  # type: ignore[arg-type]

    # raised where the tracker first finds it failed, at the latest when the first epoch ends
    with pytest.raises(MlflowException, match=r"127\.0\.0\.1"):
        start_and_train_an_epoch()


def test_constant_metrics_go_with_the_first_epoch_only(mlflow_server: LocalServer) -> None:
    experiment_id = MlflowClient(mlflow_server.url).create_experiment(_experiment())
    tracker = _tracker(mlflow_server, experiment_id, send_seconds=0.0)
    tracker.on_train_start(SimpleNamespace(rank=0, history=[]))  # type: ignore[arg-type]
    for epoch in range(1, 4):
        metrics = _epoch(epoch)
        scalars = metrics.scalars | {"params": 100.0, "dense_flops": 1e4}
        metrics = EpochMetrics(epoch, scalars, metrics.layers)
        tracker.on_epoch_end(SimpleNamespace(rank=0), metrics)  # type: ignore[arg-type]
    tracker.flush()
    client = MlflowClient(mlflow_server.url)
    run = client.get_run(tracker.run_id)
    assert run.data.params["weight_decay"] == "0.001" and run.data.params["s_init"] == "-5"
    assert set(run.data.metrics) >= CONSTANT_METRICS  # still there for charts across trials
    for key in CONSTANT_METRICS:
        assert [m.step for m in client.get_metric_history(tracker.run_id, key)] == [1]
    assert _steps(tracker) == [1, 2, 3]
    assert len(client.get_metric_history(tracker.run_id, "sparsity/conv")) == 3


class _EndCountingTracker(TrialTracker):
    """A ``TrialTracker`` that records the REST endpoints its ``on_train_end`` calls."""

    def on_train_end(self, trainer: Trainer, history: list[EpochMetrics]) -> None:
        # what the sender thread still has to do from the start (opening the run) and the epochs
        # is not the end's: a short trial can end before it is sent
        self._wait_sent()
        calls: list[str] = []
        original = rest_utils.http_request

        def counted(host_creds: Any, endpoint: str, method: str, *args: Any, **kw: Any) -> Any:
            path = re.sub(r"/m-[0-9a-f]+", "/{id}", endpoint.rsplit("/mlflow/", 1)[-1])
            calls.append(f"{method} {path}")
            return original(host_creds, endpoint, method, *args, **kw)

        rest_utils.http_request = counted
        try:
            super().on_train_end(trainer, history)
        finally:
            rest_utils.http_request = original
        self.end_calls = calls


def _one_epoch_trial(
    url: str, tracker_class: type[TrialTracker], trial_id: str
) -> tuple[MlflowClient, Any, Trainer]:
    """A job's parent run on the server at ``url``, and a one-epoch digits trial tracked under it
    by a ``tracker_class`` (the client, the tracker, the trainer, not yet run)."""
    spec = SearchSpec.parse({**SMALL, "training": {"epochs": 1}})
    client = MlflowClient(url)
    experiment_id = client.create_experiment(_experiment())
    parent = client.create_run(experiment_id, tags={JOB_TAG: "job-1", KIND_TAG: "job"})
    tracking = TrialTracking(url, experiment_id, "job-1", parent.info.run_id)
    tracker = tracker_class(tracking, trial_id, spec, 1e-3, -5.0)
    trial = trial_config(spec, weight_decay=1e-3, s_init=-5.0)
    run = build_run(trial.model, trial.data, trial.train, trial.str_config)
    return client, tracker, Trainer(run.model, trial.train, run.data, callbacks=[tracker])


@pytest.mark.filterwarnings("ignore:.*Any type hint is inferred:UserWarning")
def test_a_trial_ends_in_seven_requests(mlflow_server: LocalServer) -> None:
    client, tracker, trainer = _one_epoch_trial(mlflow_server.url, _EndCountingTracker, "t-end")
    tracker.send_seconds = 1e9  # the epoch is left for the end to send
    trainer.fit()
    # two logged models created, the last epochs with the model tag, the models finalized and
    # linked to the run, the run ended; the budget files, figures and models are copied, not
    # uploaded
    assert sorted(tracker.end_calls) == sorted(
        ["POST logged-models", "PATCH logged-models/{id}"] * 2
        + ["POST runs/outputs", "POST runs/log-batch", "POST runs/update"]
    ), tracker.end_calls
    assert _steps(tracker) == [1]
    ended = client.get_run(tracker.run_id)
    assert ended.info.status == "FINISHED"
    assert ended.data.params == tracker._params()  # with the epoch, in the end's batch
    assert ended.data.tags[MODEL_URI_TAG].startswith("models:/")
    assert len(ended.outputs.model_outputs) == 2
    assert {"budget.csv", "budget.json", "budget.png", "dynamics.png"} <= _artifacts(
        client, tracker.run_id
    )
    for output in ended.outputs.model_outputs:
        assert client.get_logged_model(output.model_id).status == LoggedModelStatus.READY


@pytest.mark.filterwarnings("ignore:.*Any type hint is inferred:UserWarning")
@pytest.mark.parametrize(("failing", "ready"), [(1, []), (2, ["str_model"])])
def test_a_model_that_fails_to_save_is_marked_failed_with_the_ones_after_it(
    mlflow_server: LocalServer, monkeypatch: pytest.MonkeyPatch, failing: int, ready: list[str]
) -> None:
    client, tracker, trainer = _one_epoch_trial(mlflow_server.url, TrialTracker, f"t-{failing}")
    saves: list[str] = []
    original = trial_module.save_trial_model

    def save(net: torch.nn.Module, *args: Any, **kwargs: Any) -> None:
        saves.append(type(net).__name__)
        if len(saves) == failing:
            raise OSError("disk full")
        original(net, *args, **kwargs)

    monkeypatch.setattr(trial_module, "save_trial_model", save)
    with pytest.raises(OSError, match="disk full"):
        trainer.fit()
    assert len(saves) == failing  # no model is saved after a failed one
    experiment_id = tracker.tracking.experiment_id
    models = client.search_logged_models(experiment_ids=[experiment_id])
    status = {m.name: m.status for m in models if m.source_run_id == tracker.run_id}
    expected = {"str_model": LoggedModelStatus.FAILED, "model": LoggedModelStatus.FAILED}
    assert status == expected | dict.fromkeys(ready, LoggedModelStatus.READY)
    # the run keeps its epochs and model tag; not linked to models that did not all save
    run = client.get_run(tracker.run_id)
    assert _steps(tracker) == [1] and MODEL_URI_TAG in run.data.tags
    assert run.outputs is None or not run.outputs.model_outputs


@pytest.fixture(scope="module")
def proxying_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalServer]:
    """A server that takes artifacts over HTTP (``mlflow-artifacts:``), as in production."""
    server = start_server(tmp_path_factory.mktemp("proxying"), proxy_artifacts=True)
    yield server
    stop_server(server)


@pytest.mark.filterwarnings("ignore:.*Any type hint is inferred:UserWarning")
def test_a_trial_uploads_whole_models_through_a_proxying_server(
    proxying_server: LocalServer, tmp_path: Path
) -> None:
    client, tracker, trainer = _one_epoch_trial(proxying_server.url, TrialTracker, "t-proxied")
    session_uri = (mlflow.get_tracking_uri(), os.environ["MLFLOW_TRACKING_URI"])
    trainer.fit()
    # the model logging used this server without leaving the process pointed at it
    assert (mlflow.get_tracking_uri(), os.environ["MLFLOW_TRACKING_URI"]) == session_uri

    ended = client.get_run(tracker.run_id)
    assert ended.info.artifact_uri.startswith("mlflow-artifacts:")
    assert _artifacts(client, tracker.run_id) == {
        "budget.csv", "budget.json", "budget.png", "dynamics.png"
    }  # fmt: skip
    # every file of both models arrived, in its folder (they are uploaded several at a time)
    code = sorted(
        p.relative_to(tmp_path / "code").as_posix()
        for p in copy_model_code(tmp_path / "code").rglob("*")
        if p.is_file()
    )
    models = tmp_path / "models"
    for output in ended.outputs.model_outputs:
        model_uri = f"models:/{output.model_id}"
        with using_tracking_uri(proxying_server.url):
            local = Path(mlflow.artifacts.download_artifacts(model_uri, dst_path=str(models)))
            loaded = mlflow.pytorch.load_model(model_uri)
        files = {p.relative_to(local).as_posix() for p in local.rglob("*") if p.is_file()}
        assert {"MLmodel", "data/model.pth", "input_example.json"} <= files, files
        assert {f"code/{name}" for name in code} <= files, sorted(files)
        example = torch.stack([trainer.data.test[i][0] for i in range(2)])
        assert loaded(example).shape == (2, 10)
        shutil.rmtree(local)


FIRST_CHECK = """
import sys
import mlflow.utils.requirements_utils as requirements
from workers.tracking.trial import prepare_model_logging
assert requirements._MODULES_TO_PACKAGES is None, "the map exists before the first check"
assert "mlflow.pyfunc" not in sys.modules, "pyfunc is imported before the first model"
prepare_model_logging()
assert "torch" in requirements._MODULES_TO_PACKAGES, "prepare_model_logging left it to log_model"
assert "mlflow.pyfunc" in sys.modules, "prepare_model_logging left the pyfunc import to the end"
"""


def test_preparing_model_logging_builds_mlflows_package_map() -> None:
    # The first model logged in a process maps every installed module to its distribution;
    # a trial builds that map while it trains. In a fresh process, as a Ray trial actor is.
    root = Path(__file__).resolve().parents[2]
    done = subprocess.run(
        [sys.executable, "-c", FIRST_CHECK],
        check=False,
        cwd=root,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-2000:]
