"""The MLflow UI helpers against a real tracking server and headless Debian Chromium.

Needs ``apt-get install -y chromium`` (``/usr/bin/chromium``); skipped without it.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import mlflow
import pytest
from PIL import Image

pytest.importorskip("playwright.sync_api", reason="playwright is not installed")

from playwright.sync_api import Browser, Page

from tests.browser.mlflow_ui import (
    CHROMIUM,
    expand_parent_run,
    new_page,
    open_experiment,
    open_run_artifact,
    screenshot,
)
from workers.mlflow_server import LocalServer

if not CHROMIUM.exists():
    pytest.skip(f"{CHROMIUM} not found: apt-get install -y chromium", allow_module_level=True)

PNG_PATH = "plots/sparsity.png"


@dataclass(frozen=True)
class Logged:
    experiment_name: str
    experiment_id: str
    parent_name: str
    child_names: tuple[str, ...]
    image_run_id: str


@pytest.fixture(scope="module")
def logged(mlflow_server: LocalServer, tmp_path_factory: pytest.TempPathFactory) -> Logged:
    """One experiment: a parent run, two nested children, a PNG on the first child."""
    client = mlflow.MlflowClient(mlflow_server.url)
    name = f"ui-check-{uuid.uuid4().hex[:8]}"
    experiment_id = client.create_experiment(name)
    parent = client.create_run(experiment_id, run_name="search")
    children = [
        client.create_run(
            experiment_id, run_name=f"trial-{i}", tags={"mlflow.parentRunId": parent.info.run_id}
        )
        for i in range(2)
    ]
    png = tmp_path_factory.mktemp("png") / Path(PNG_PATH).name
    Image.new("RGB", (24, 16), (200, 40, 40)).save(png)
    client.log_artifact(children[0].info.run_id, str(png), artifact_path=str(Path(PNG_PATH).parent))
    for run in (*children, parent):
        client.set_terminated(run.info.run_id)
    return Logged(name, experiment_id, "search", ("trial-0", "trial-1"), children[0].info.run_id)


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    page = new_page(browser)
    yield page
    page.context.close()


def test_experiment_lists_the_parent_and_its_children(
    page: Page, mlflow_server: LocalServer, logged: Logged
) -> None:
    open_experiment(page, mlflow_server.url, logged.experiment_name)
    parent = page.get_by_role("link", name=logged.parent_name, exact=True)
    parent.wait_for(state="visible", timeout=60_000)  # the table fills in after the page loads
    assert not page.get_by_role("link", name=logged.child_names[0], exact=True).is_visible()

    children = expand_parent_run(page, logged.parent_name)

    assert sorted(children) == list(logged.child_names)


def test_png_artifact_is_previewed(
    page: Page, mlflow_server: LocalServer, logged: Logged, tmp_path: Path
) -> None:
    preview = open_run_artifact(
        page, mlflow_server.url, logged.experiment_id, logged.image_run_id, PNG_PATH
    )

    assert preview.evaluate("img => [img.naturalWidth, img.naturalHeight]") == [24, 16]
    shot = screenshot(page, tmp_path / "mlflow_ui.png")
    with Image.open(shot) as image:
        assert image.format == "PNG"
        assert image.width >= 1000
