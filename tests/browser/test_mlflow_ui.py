"""The MLflow UI of a finished search, seen by headless Chromium.

One real small search is recorded on the session's tracking server; the browser then finds its
experiment, the parent run with one child run per trial, a trial's budget plot and the job's
trade-off plot. With ``STRSEARCH_SCREENSHOTS=<folder>`` the runs table and the budget plot are
also saved there as ``mlflow_ui.png`` and ``mlflow_budget.png`` (the README's pictures)::

    STRSEARCH_SCREENSHOTS=docs/img .venv/bin/python -m pytest tests/browser/test_mlflow_ui.py

Needs ``apt-get install -y chromium`` (``/usr/bin/chromium``) and playwright; skipped without.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient
from PIL import Image

pytest.importorskip("playwright.sync_api", reason="playwright is not installed")

from playwright.sync_api import Browser, Page, expect

from strsearch.spec import SearchSpec
from tests.browser.mlflow_ui import (
    CHROMIUM,
    RUN_NAME_COLUMN,
    choose_columns,
    collapse_sidebar,
    column_headers,
    expand_parent_run,
    new_page,
    open_experiment,
    open_run_artifact,
    resize_column,
    screenshot,
)
from workers import run_search
from workers.mlflow_server import LocalServer
from workers.tracking import JOB_TAG, KIND_TAG, TRIAL_TAG, TrackingSettings

if not CHROMIUM.exists():
    pytest.skip(f"{CHROMIUM} not found: apt-get install -y chromium", allow_module_level=True)

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("local_ray")]

# digits_cnn for 6 epochs, 4 trials two at a time: a real search of ~40 s on two cores. Fewer
# epochs leave BatchNorm's running statistics behind the fast-moving weights of the high-λ
# trials (chance accuracy in eval mode), which would make a poor picture.
SPEC = {
    "model": "digits_cnn",
    "dataset": "digits",
    "target_sparsity": 0.8,
    "tolerance": 0.02,
    "training": {"epochs": 6},
    "search": {"max_trials": 4, "parallel_trials": 2, "lambda_min": 1e-3, "lambda_max": 5e-2},
}
SCREENSHOTS_ENV = "STRSEARCH_SCREENSHOTS"
# README pictures: a laptop-sized window, so the text stays readable when the image is scaled
README_WIDTH, README_HEIGHT = 1280, 800
# what a trial row should show beside its name; empty columns hidden to make room
TRIAL_METRICS = ("sparsity", "val_acc", "test_acc", "flops")
EMPTY_COLUMNS = ("Dataset", "Source")
RUN_NAME_WIDTH = 290  # "trial-<id> λ=<4 digits> s=<s_init>" in full


@dataclass(frozen=True)
class Recorded:
    """What the search left on the tracking server, found through the client API."""

    experiment_name: str
    experiment_id: str
    parent_name: str
    parent_run_id: str
    trial_runs: dict[str, str]  # trial id -> child run id
    best_trial: str


@pytest.fixture(scope="module")
def recorded(
    local_ray: None, mlflow_server: LocalServer, tmp_path_factory: pytest.TempPathFactory
) -> Recorded:
    """Run one small search into a fresh experiment and look its runs up by tag."""
    experiment = f"ui-search-{uuid.uuid4().hex[:8]}"
    job_id = f"job-{uuid.uuid4().hex[:6]}"
    settings = TrackingSettings(tracking_uri=mlflow_server.url, experiment=experiment)
    result = run_search(
        SearchSpec.parse(SPEC),
        storage_path=tmp_path_factory.mktemp("search"),
        tracking=settings,
        job_id=job_id,
    )
    client = MlflowClient(mlflow_server.url)
    found = client.get_experiment_by_name(experiment)
    assert found is not None
    runs = client.search_runs([found.experiment_id], max_results=100)
    (parent,) = [r for r in runs if r.data.tags.get(KIND_TAG) == "job"]
    assert parent.data.tags[JOB_TAG] == job_id
    trial_runs = {
        r.data.tags[TRIAL_TAG]: r.info.run_id for r in runs if r.data.tags.get(KIND_TAG) == "trial"
    }
    assert sorted(trial_runs) == sorted(t.trial_id for t in result.trials)
    assert len(trial_runs) >= 2 and result.best is not None
    return Recorded(
        experiment_name=experiment,
        experiment_id=found.experiment_id,
        parent_name=f"search {job_id}",
        parent_run_id=parent.info.run_id,
        trial_runs=trial_runs,
        best_trial=result.best.trial_id,
    )


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    page = new_page(browser, README_WIDTH, README_HEIGHT)
    yield page
    page.context.close()


def _save(page: Page, tmp_path: Path, name: str) -> Path:
    """Screenshot the viewport into ``tmp_path`` and, if asked for, the screenshots folder."""
    page.evaluate("document.activeElement?.blur()")  # no focus ring on the last clicked cell
    page.mouse.move(0, README_HEIGHT - 1)  # no hover highlight or tooltip
    shot = screenshot(page, tmp_path / name, full_page=False)
    folder = os.environ.get(SCREENSHOTS_ENV)
    if folder:
        screenshot(page, Path(folder) / name, full_page=False)
    with Image.open(shot) as image:
        assert image.size == (README_WIDTH, README_HEIGHT)
    return shot


def test_the_parent_run_lists_every_trial(
    page: Page, mlflow_server: LocalServer, recorded: Recorded, tmp_path: Path
) -> None:
    open_experiment(page, mlflow_server.url, recorded.experiment_name)
    parent = page.get_by_role("link", name=recorded.parent_name, exact=True)
    parent.wait_for(state="visible", timeout=60_000)  # the table fills in after the page loads

    children = expand_parent_run(page, recorded.parent_name)

    assert len(children) == len(recorded.trial_runs)
    for trial_id in recorded.trial_runs:  # run names: "trial-<id> λ=… s=…"
        assert [c for c in children if c.startswith(f"trial-{trial_id} ")], (trial_id, children)

    collapse_sidebar(page)
    choose_columns(page, show=TRIAL_METRICS, hide=EMPTY_COLUMNS)
    resize_column(page, RUN_NAME_COLUMN, RUN_NAME_WIDTH)
    headers = column_headers(page)
    assert set(TRIAL_METRICS) <= set(headers) and not set(EMPTY_COLUMNS) & set(headers), headers
    _save(page, tmp_path, "mlflow_ui.png")


def test_a_trial_shows_its_budget_plot(
    page: Page, mlflow_server: LocalServer, recorded: Recorded, tmp_path: Path
) -> None:
    run_id = recorded.trial_runs[recorded.best_trial]

    preview = open_run_artifact(
        page, mlflow_server.url, recorded.experiment_id, run_id, "budget.png"
    )

    width, height = preview.evaluate("img => [img.naturalWidth, img.naturalHeight]")
    assert width > 300 and height > 200  # a real plot, not a placeholder icon
    collapse_sidebar(page)
    expect(preview).to_be_in_viewport()
    _save(page, tmp_path, "mlflow_budget.png")


def test_the_job_shows_its_tradeoff_plot(
    page: Page, mlflow_server: LocalServer, recorded: Recorded, tmp_path: Path
) -> None:
    preview = open_run_artifact(
        page,
        mlflow_server.url,
        recorded.experiment_id,
        recorded.parent_run_id,
        "accuracy_vs_sparsity.png",
    )

    width, height = preview.evaluate("img => [img.naturalWidth, img.naturalHeight]")
    assert width > 300 and height > 200
    screenshot(page, tmp_path / "accuracy_vs_sparsity.png", full_page=False)
