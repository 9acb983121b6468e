"""Drive the MLflow 3.17 web UI with Playwright's sync API (headless Debian Chromium).

Selectors prefer roles, visible text and ``data-testid``; the few MLflow/AG Grid attributes used
(``col-id`` of the run-name column, ``artifact-name`` of artifact tree nodes) are named once below.

Quirks of MLflow 3.17 that these helpers absorb:

- The UI opens in "GenAI" mode, where an experiment link lands on a traces overview and the
  sidebar lists GenAI pages; the toggle "Model training" switches to the runs table. The choice
  is kept in localStorage, which :func:`new_page` pre-sets; :func:`open_experiment` also clicks
  the toggle in case a later MLflow renames the key.
- An "MLflow Assistant" side panel opens by itself on first load and takes a third of the
  width; :func:`new_page` pre-sets its localStorage flag so it stays closed.
- The runs page keeps polling, so ``wait_for_load_state("networkidle")`` never returns: wait
  for concrete elements instead.
- The runs table is an AG Grid with row virtualisation: only rows near the viewport exist in
  the DOM, so use a tall viewport when a parent has many children. Its columns resize only
  through a mouse drag of the header's edge (:func:`resize_column`).
- The column chooser's tree has no ARIA roles, and while its search box is filled the node
  titles lose their ``title`` attribute (the match is highlighted): nodes are found by text.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterable
from pathlib import Path

from playwright.sync_api import Browser, Locator, Page, Playwright, expect

CHROMIUM = Path("/usr/bin/chromium")
VIEWPORT_WIDTH, VIEWPORT_HEIGHT = 1400, 1000
RUN_NAME_COLUMN = "attributes.`Run Name`"
RUN_NAME_CELL = f'[role="gridcell"][col-id="{RUN_NAME_COLUMN}"]'
HEADER_CELLS = ".ag-header-cell[col-id]"
HEADER_CELL = '.ag-header-cell[col-id="{col_id}"]'
HEADER_RESIZE = ".ag-header-cell-resize"
ARTIFACT_NODE = '[data-testid="artifact-tree-node"][artifact-name="{name}"]'
COLUMN_NODE = '[class*="-tree-treenode"]'  # the chooser's tree (Du Bois, an antd fork)
COLUMN_CHECKBOX = '[class*="-tree-checkbox"]'
_CHECKED_CLASS = re.compile(r"-tree-checkbox-checked\b")
# MLflow's own localStorage flags (JSON values): the assistant already auto-opened once, and is
# closed; the UI is in "Model training" mode. If a later MLflow renames them the panel merely
# stays open, and the mode is GenAI.
_PRESET_UI = """
window.localStorage.setItem("mlflow.assistant.fab.autoOpenedOnFirstLoad_v1", "true");
window.localStorage.setItem("mlflow.assistant.panelOpen_v1", "false");
window.localStorage.setItem("mlflow.workflowType_v1", '"machine_learning"');
"""


def launch_chromium(playwright: Playwright, executable: Path = CHROMIUM) -> Browser:
    """Launch the system Chromium headless (``--no-sandbox``: CI containers run as root)."""
    return playwright.chromium.launch(
        executable_path=str(executable), headless=True, args=["--no-sandbox"]
    )


def new_page(browser: Browser, width: int = VIEWPORT_WIDTH, height: int = VIEWPORT_HEIGHT) -> Page:
    """A fresh context's page: ``width`` x ``height``, assistant closed, "Model training" mode."""
    context = browser.new_context(viewport={"width": width, "height": height})
    context.add_init_script(_PRESET_UI)
    return context.new_page()


def open_experiment(page: Page, base_url: str, experiment_name: str) -> None:
    """Open the experiment list, find ``experiment_name`` and wait for its runs table.

    Args:
        page: The page to drive.
        base_url: The MLflow server URL, e.g. ``http://127.0.0.1:5000``.
        experiment_name: Exact name of the experiment.

    Raises:
        AssertionError: If the experiment or its runs table does not appear.
    """
    page.goto(f"{base_url}/#/experiments")
    search = page.get_by_placeholder("Search experiments")
    expect(search).to_be_visible()
    _use_model_training_mode(page)
    search.fill(experiment_name)
    search.press("Enter")
    experiment_links = page.get_by_test_id("experiment-list-item-link")
    experiment_links.and_(page.get_by_role("link", name=experiment_name, exact=True)).click()
    expect(page).to_have_url(_contains("/runs"))
    expect(page.get_by_test_id("sort-header-Run Name")).to_be_visible()


def expand_parent_run(page: Page, parent_run_name: str, timeout: float = 15.0) -> list[str]:
    """Expand ``parent_run_name`` in the open runs table and return its children's names.

    Args:
        page: A page showing an experiment's runs table (see :func:`open_experiment`).
        parent_run_name: Exact run name of a top-level run with nested runs.
        timeout: Seconds to wait for the child rows.

    Returns:
        Names of the rows that expanding the parent revealed, in table order.

    Raises:
        AssertionError: If the parent row, its expander or any child row does not appear.
    """
    parent = page.locator(RUN_NAME_CELL).filter(
        has=page.get_by_role("link", name=parent_run_name, exact=True)
    )
    expect(parent).to_have_count(1)
    expander = parent.get_by_role("button")
    collapsed = _run_names(page)
    expander.click()
    _wait_for(lambda: _run_names(page) != collapsed, timeout, f"rows under {parent_run_name}")
    if len(_run_names(page)) < len(collapsed):  # it was expanded already (state is remembered)
        collapsed = _run_names(page)
        expander.click()
        _wait_for(lambda: _run_names(page) != collapsed, timeout, f"rows under {parent_run_name}")
    return [name for name in _run_names(page) if name not in collapsed]


def collapse_sidebar(page: Page) -> None:
    """Fold MLflow's left sidebar to its icons, leaving the page's content the whole width.

    Only done where the sidebar shows the "Model training" switch, i.e. is expanded (a fresh
    context always starts expanded); elsewhere the page is left as it is.
    """
    switch = page.get_by_role("button", name="Model training", exact=True)
    if switch.is_visible():
        page.get_by_role("button", name="Toggle sidebar", exact=True).click()
        expect(switch).to_be_hidden()


def choose_columns(page: Page, show: Iterable[str] = (), hide: Iterable[str] = ()) -> None:
    """Show and hide columns of the open runs table through its "Columns" chooser.

    A name is an attribute (``Source``), metric or param name, matched exactly; where a metric
    and a param share a name, the metric's column is meant (the chooser lists metrics first).

    Args:
        page: A page showing an experiment's runs table (see :func:`open_experiment`).
        show: Columns to show (already shown ones stay).
        hide: Columns to hide (already hidden ones stay hidden).

    Raises:
        AssertionError: If a name is not in the chooser.
    """
    page.get_by_role("button", name="Columns", exact=True).click()
    search = page.get_by_placeholder("Search columns")
    tree = page.get_by_test_id("column-selector-tree")
    wanted = [(name, True) for name in show] + [(name, False) for name in hide]
    for name, visible in wanted:
        search.fill(name)
        node = tree.locator(COLUMN_NODE).filter(has_text=_exactly(name)).first
        _set_checked(node.locator(COLUMN_CHECKBOX).first, visible)
    page.keyboard.press("Escape")
    expect(tree).to_be_hidden()


def column_headers(page: Page) -> list[str]:
    """The header texts of the open runs table's rendered columns, left to right."""
    texts = page.locator(HEADER_CELLS).evaluate_all("cells => cells.map(c => c.innerText.trim())")
    return [str(text) for text in texts if text]


def resize_column(page: Page, col_id: str, width: int) -> None:
    """Drag the right edge of the runs table's column ``col_id`` until it is ``width`` px wide.

    Args:
        page: A page showing an experiment's runs table.
        col_id: AG Grid column id, e.g. :data:`RUN_NAME_COLUMN`.
        width: The wanted width in CSS pixels.

    Raises:
        AssertionError: If the header or its resize handle is missing, or the width did not take.
    """
    header = page.locator(HEADER_CELL.format(col_id=col_id))
    handle = header.locator(HEADER_RESIZE)
    handle.hover()
    box, start = handle.bounding_box(), header.bounding_box()
    assert box is not None and start is not None, f"column {col_id} is not rendered"
    x, y = box["x"] + 2, box["y"] + box["height"] / 2  # inside the header, not the next one
    page.mouse.move(x, y)
    page.mouse.down()
    page.mouse.move(x + width - start["width"], y, steps=10)  # AG Grid needs several moves
    page.mouse.up()
    _wait_for(lambda: _width(header) == width, 5.0, f"column {col_id} at {width} px")


def open_run_artifact(
    page: Page, base_url: str, experiment_id: str, run_id: str, artifact_path: str
) -> Locator:
    """Open a run's Artifacts tab, select the image ``artifact_path`` and check its preview.

    Args:
        page: The page to drive.
        base_url: The MLflow server URL.
        experiment_id: Id of the run's experiment.
        run_id: Id of the run.
        artifact_path: Path of an image artifact inside the run, e.g. ``plots/budget.png``.

    Returns:
        The preview ``<img>``, already checked to be visible and decoded.

    Raises:
        AssertionError: If the tab, a tree node or a decoded preview does not appear.
    """
    page.goto(f"{base_url}/#/experiments/{experiment_id}/runs/{run_id}")
    page.get_by_role("tab", name="Artifacts").click()
    for part in artifact_path.split("/"):  # open each folder, then select the file
        page.locator(ARTIFACT_NODE.format(name=part)).first.click()
    preview = page.get_by_role("img", name=artifact_path, exact=True)
    expect(preview).to_be_visible()
    _wait_for(lambda: _decoded_width(preview) > 0, 10.0, f"decoded preview of {artifact_path}")
    return preview


def screenshot(page: Page, path: Path | str, *, full_page: bool = True) -> Path:
    """Save a PNG screenshot of ``page`` (whole page, or the viewport only) and return its path."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(target), full_page=full_page)
    return target


def _use_model_training_mode(page: Page) -> None:
    toggle = page.get_by_role("button", name="Model training", exact=True)
    if toggle.count():  # absent in MLflow versions without the GenAI/ML switch
        toggle.click()


def _run_names(page: Page) -> list[str]:
    """Run names of the rendered rows of the runs table, in row order (one DOM snapshot)."""
    rows = page.locator(RUN_NAME_CELL).evaluate_all(
        """cells => cells.map(cell => [
            Number(cell.parentElement.getAttribute("row-index")),
            (cell.querySelector("a")?.textContent ?? "").trim(),
        ])"""
    )
    return [str(name) for _, name in sorted(rows)]


def _set_checked(checkbox: Locator, checked: bool) -> None:
    """Click a chooser checkbox (it has no ARIA state, only a class) unless already ``checked``."""
    expect(checkbox).to_be_visible()
    if (_CHECKED_CLASS.search(checkbox.get_attribute("class") or "") is not None) != checked:
        checkbox.click()
    if checked:
        expect(checkbox).to_have_class(_CHECKED_CLASS)
    else:
        expect(checkbox).not_to_have_class(_CHECKED_CLASS)


def _width(element: Locator) -> int:
    box = element.bounding_box()
    return round(box["width"]) if box else 0


def _exactly(text: str) -> re.Pattern[str]:
    return re.compile(f"^{re.escape(text)}$")


def _decoded_width(image: Locator) -> int:
    width = image.evaluate("img => img.complete ? img.naturalWidth : 0")
    return int(width)


def _wait_for(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(0.1)


def _contains(fragment: str) -> re.Pattern[str]:
    return re.compile(re.escape(fragment))
