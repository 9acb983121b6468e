"""Plots: Pareto front on hand-made cases, and real Agg renders of every figure."""

from __future__ import annotations

import math
import subprocess
import sys
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import matplotlib
import numpy as np
import pytest
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Rectangle
from matplotlib.text import Annotation
from matplotlib.transforms import Bbox
from PIL import Image

from str_core.train.callbacks import EpochMetrics, LayerSnapshot
from workers.plots import (
    MethodPoint,
    TradeoffPoint,
    budget_figure,
    comparison_figure,
    dynamics_figure,
    pareto_front,
    save_png,
    tradeoff_figure,
)

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def make_layers(n: int, progress: float = 1.0) -> dict[str, LayerSnapshot]:
    """``n`` layers, sparser with depth; the first one is dense (no threshold)."""
    layers = {}
    for i in range(n):
        params = 1000 * (1 + i % 7) ** 3
        sparsity = round(progress * (0.2 + 0.75 * i / max(n - 1, 1)), 4)
        threshold = None if i == 0 else progress * 0.01 * (i + 1)
        nonzero = round(params * (1 - sparsity))
        layers[f"layer{i}.conv"] = LayerSnapshot(sparsity, threshold, nonzero, params)
    return layers


def make_history(n: int, epochs: int = 4) -> list[EpochMetrics]:
    history = []
    for e in range(1, epochs + 1):
        layers = make_layers(n, progress=e / epochs)
        total = sum(s.params for s in layers.values())
        sparsity = 1 - sum(s.nonzero for s in layers.values()) / total
        history.append(EpochMetrics(e, {"sparsity": sparsity, "val_acc": 0.9}, layers))
    return history


def point(
    tid: str, sparsity: float, accuracy: float, flops: float | None = None, landed: bool = False
) -> TradeoffPoint:
    return TradeoffPoint(tid, sparsity, accuracy, flops, landed)


def ids(points: list[TradeoffPoint]) -> list[str]:
    return [p.trial_id for p in points]


def assert_png(path: Path, min_std: float = 10.0) -> None:
    """A real PNG whose pixels are not all one colour (a blank figure has std 0)."""
    assert path.read_bytes()[:8] == PNG_SIGNATURE
    with Image.open(path) as image:
        assert image.format == "PNG"
        pixels = np.asarray(image.convert("L"), dtype=float)
    assert pixels.shape[0] > 100 and pixels.shape[1] > 100
    assert pixels.std() > min_std


def data(line: Line2D, axis: str = "x") -> list[float]:
    values = line.get_xdata() if axis == "x" else line.get_ydata()
    return [float(v) for v in np.asarray(values, dtype=float)]


def rectangles(ax: Axes) -> list[Rectangle]:
    return [p for p in ax.patches if isinstance(p, Rectangle)]


def scattered(ax: Axes) -> int:
    """How many points the scatter plots of ``ax`` hold."""
    return sum(len(np.asarray(c.get_offsets())) for c in ax.collections)


def front_line(ax: Axes) -> Line2D:
    (line,) = [ln for ln in ax.get_lines() if ln.get_label() == "Pareto front"]
    return line


def notes(ax: Axes) -> list[str]:
    return [c.get_text() for c in ax.get_children() if isinstance(c, Annotation)]


# --------------------------------------------------------------------------- pareto_front


def test_pareto_sparsity_keeps_only_non_dominated_points_sorted_by_x() -> None:
    pts = [
        point("d", 0.9, 0.70),
        point("a", 0.5, 0.90),
        point("c", 0.7, 0.80),  # dominated by b: sparser and more accurate
        point("b", 0.8, 0.85),
        point("e", 0.4, 0.88),  # dominated by a
    ]
    assert ids(pareto_front(pts, "sparsity")) == ["a", "b", "d"]


def test_pareto_flops_prefers_fewer_flops_and_skips_missing_flops() -> None:
    pts = [
        point("b", 0.5, 0.90, flops=200.0),
        point("a", 0.9, 0.80, flops=100.0),
        point("c", 0.4, 0.85, flops=300.0),  # dominated by b: more FLOPs, less accurate
        point("none", 0.99, 0.99, flops=None),  # would dominate everything; has no FLOPs
    ]
    assert ids(pareto_front(pts, "flops")) == ["a", "b"]
    # The same points judged on sparsity: "none" dominates all of them.
    assert ids(pareto_front(pts, "sparsity")) == ["none"]


def test_pareto_ties_are_deterministic_whatever_the_input_order() -> None:
    pts = [
        point("t2", 0.8, 0.85),
        point("t1", 0.8, 0.85),  # exact duplicate of t2: both on the front, by trial id
        point("lower", 0.8, 0.84),  # same sparsity, less accurate: dominated
        point("less-sparse", 0.7, 0.85),  # same accuracy, less sparse: dominated
        point("x", 0.6, 0.95),
    ]
    expected = ["x", "t1", "t2"]
    assert ids(pareto_front(pts, "sparsity")) == expected
    assert ids(pareto_front(pts[::-1], "sparsity")) == expected


def test_pareto_skips_non_finite_points_and_handles_empty_input() -> None:
    pts = [
        point("nan-acc", 0.95, math.nan, flops=1.0),
        point("inf-flops", 0.5, 0.99, flops=math.inf),
        point("ok", 0.5, 0.9, flops=10.0),
    ]
    assert ids(pareto_front(pts, "sparsity")) == ["inf-flops"]
    assert ids(pareto_front(pts, "flops")) == ["ok"]
    assert pareto_front([], "flops") == []


# --------------------------------------------------------------------------- budget


@pytest.mark.parametrize("n", [3, 60])
def test_budget_bars_match_layers_and_render(n: int, tmp_path: Path) -> None:
    layers = make_layers(n)
    fig = budget_figure(layers, title="budget")
    ax_s, ax_p = fig.axes[:2]
    bars = rectangles(ax_s)
    assert [b.get_width() for b in bars] == pytest.approx([s.sparsity for s in layers.values()])
    assert [t.get_text() for t in ax_s.get_yticklabels()] == list(layers)
    sizes = [p.get_width() for p in rectangles(ax_p)]
    assert sizes == pytest.approx([s.params for s in layers.values()])
    assert ax_p.get_xscale() == "log"
    value_labels = [t.get_text() for t in ax_s.texts]
    assert value_labels == ([f"{s.sparsity:.1%}" for s in layers.values()] if n <= 20 else [])
    total = sum(s.params for s in layers.values())
    overall = 1 - sum(s.nonzero for s in layers.values()) / total
    (line,) = ax_s.get_lines()
    assert data(line) == pytest.approx([overall, overall])
    assert_png(save_png(fig, tmp_path / "budget.png"))


def test_budget_colours_dense_layers_apart() -> None:
    layers = make_layers(3)
    bars = budget_figure(layers).axes[0].patches
    assert bars[0].get_facecolor() != bars[1].get_facecolor()  # layer0 has no threshold
    assert bars[1].get_facecolor() == bars[2].get_facecolor()


def long_named_layers(n: int) -> dict[str, LayerSnapshot]:
    """``make_layers(n)`` under ResNet-50-style names, some long."""
    names = [f"layer{1 + i // 16}.{i % 16}.downsample.{i % 3}.conv" for i in range(n)]
    return dict(zip(names, make_layers(n).values(), strict=True))


def assert_laid_out(fig: Figure, dpi: int, *, texts_inside: bool = True) -> None:
    """Drawn at ``dpi``, every axes with its labels, every legend and the title lie inside the
    canvas, two pixels clear of its edges, and none of them overlaps another (one pixel of
    slack); with ``texts_inside``, the texts in an axes (value labels on bars, notes) end inside
    it."""
    fig.set_dpi(dpi)  # hinted text is not equally wide at every resolution
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()  # type: ignore[attr-defined]
    parts: dict[str, Bbox] = {}
    for i, ax in enumerate(fig.axes):
        box = ax.get_tightbbox(renderer)
        assert box is not None
        parts[f"axes {i}"] = box
    parts |= {f"legend {i}": legend.get_window_extent(renderer) for i, legend in
              enumerate(fig.legends)}  # fmt: skip
    parts |= {f"text {t.get_text()!r}": t.get_window_extent(renderer) for t in fig.texts}
    for i, ax in enumerate(fig.axes):  # value labels end inside their panel
        for text in ax.texts if texts_inside else []:
            box = text.get_window_extent(renderer)
            assert ax.bbox.x0 - 1 <= box.x0 and box.x1 <= ax.bbox.x1 + 1, (
                f"label {text.get_text()!r} {box.bounds} leaves axes {i} {ax.bbox.bounds}"
            )
    canvas = fig.bbox
    for name, box in parts.items():
        inside = (box.x0 >= canvas.x0 + 2, box.y0 >= canvas.y0 + 2,
                  box.x1 <= canvas.x1 - 2, box.y1 <= canvas.y1 - 2)  # fmt: skip
        assert all(inside), f"{name} {box.bounds} leaves the canvas {canvas.bounds}"
    names = list(parts)
    for i, first in enumerate(names):
        for second in names[i + 1 :]:
            a, b = parts[first], parts[second]
            overlap_x = min(a.x1, b.x1) - max(a.x0, b.x0)
            overlap_y = min(a.y1, b.y1) - max(a.y0, b.y0)
            assert min(overlap_x, overlap_y) <= 1, f"{first} overlaps {second}"


@pytest.mark.parametrize("n", [1, 12, 13, 21, 54])
@pytest.mark.parametrize("names", ["short", "long"])
@pytest.mark.parametrize("dpi", [72, 110])
def test_trial_figures_fit_their_canvas(n: int, names: str, dpi: int) -> None:
    layers = make_layers(n) if names == "short" else long_named_layers(n)
    history = []
    for e in range(1, 31):
        history.append(EpochMetrics(e, {"sparsity": 0.9 * e / 30}, make_layers(n, e / 30)))
    history = [EpochMetrics(m.epoch, m.scalars, dict(zip(layers, m.layers.values(), strict=True)))
               for m in history]  # fmt: skip
    assert_laid_out(budget_figure(layers, title="trial 0123abcd: λ=0.005 s=-5"), dpi)
    assert_laid_out(dynamics_figure(history, title="trial 0123abcd: λ=0.005 s=-5"), dpi)


# --------------------------------------------------------------------------- dynamics


@pytest.mark.parametrize("n", [3, 60])
def test_dynamics_draws_one_line_per_layer_and_renders(n: int, tmp_path: Path) -> None:
    history = make_history(n)
    fig = dynamics_figure(history, title="dynamics")
    ax_s, ax_t = fig.axes[:2]
    lines = ax_s.get_lines()
    assert len(lines) == n + 1  # every layer plus the overall sparsity
    assert [ln.get_label() for ln in lines] == [*history[-1].layers, "overall"]
    assert data(lines[-1], "y") == pytest.approx([m.scalars["sparsity"] for m in history])
    assert data(lines[1]) == [1, 2, 3, 4]
    assert len(ax_t.get_lines()) == n - 1  # STR layers only: layer0 is dense
    if n <= 12:
        assert len(fig.legends) == 1
        assert len(fig.legends[0].get_texts()) == n + 1
    else:
        assert not fig.legends
        assert len(fig.axes) == 3  # the depth colour bar
    assert_png(save_png(fig, tmp_path / "dynamics.png"))


def test_dynamics_uses_log_scale_only_for_thresholds_spanning_decades() -> None:
    wide = dynamics_figure(make_history(60))  # thresholds 0.005 .. 0.6
    assert wide.axes[1].get_yscale() == "log"
    narrow = dynamics_figure(make_history(3))  # thresholds 0.005 .. 0.03
    assert narrow.axes[1].get_yscale() == "linear"


def test_dynamics_without_str_layers_leaves_threshold_panel_empty() -> None:
    dense = {"fc": LayerSnapshot(0.0, None, 10, 10)}
    fig = dynamics_figure([EpochMetrics(1, {"sparsity": 0.0}, dense)])
    assert fig.axes[1].get_lines() == []
    assert any(t.get_text() == "no STR layers" for t in fig.axes[1].texts)


# --------------------------------------------------------------------------- trade-off


def trials() -> list[TradeoffPoint]:
    return [
        point("t0", 0.70, 0.95, flops=3.0e8),
        point("t1", 0.85, 0.92, flops=1.5e8),
        point("t2", 0.89, 0.90, flops=1.1e8, landed=True),
        point("t3", 0.905, 0.91, flops=1.0e8, landed=True),
        point("t4", 0.95, 0.80, flops=0.5e8),
        point("t5", 0.80, 0.85, flops=None),
    ]


def test_tradeoff_sparsity_shades_band_draws_front_and_names_best(tmp_path: Path) -> None:
    pts = trials()
    fig = tradeoff_figure(pts, x="sparsity", target=0.9, tolerance=0.02, title="trade-off")
    ax = fig.axes[0]
    (band,) = [p for p in rectangles(ax) if p.get_gid() == "tolerance-band"]
    assert (band.get_bbox().x0, band.get_bbox().x1) == pytest.approx((0.88, 0.92))
    line = front_line(ax)
    front = pareto_front(pts, "sparsity")
    assert ids(front) == ["t0", "t1", "t3", "t4"]
    assert data(line) == [p.sparsity for p in front]
    assert data(line, "y") == [p.accuracy for p in front]
    assert line.get_drawstyle() == "steps-pre"
    (note,) = notes(ax)
    assert "t3" in note and "91.00%" in note
    assert scattered(ax) == len(pts)
    assert_png(save_png(fig, tmp_path / "tradeoff.png"))


def test_tradeoff_flops_uses_readable_units_and_dense_fraction(tmp_path: Path) -> None:
    pts = trials()
    fig = tradeoff_figure(pts, x="flops", target=0.9, tolerance=0.02, dense_flops=1.0e9)
    ax = fig.axes[0]
    assert "[M]" in ax.get_xlabel()
    assert ax.xaxis.get_major_formatter()(2.5e8, 0) == "250"
    assert not [p for p in ax.patches if p.get_gid() == "tolerance-band"]
    assert len(ax.child_axes) == 1  # the fraction-of-dense axis on top
    line = front_line(ax)
    assert data(line) == [p.flops for p in pareto_front(pts, "flops")]
    assert line.get_drawstyle() == "steps-post"
    assert scattered(ax) == len(pts) - 1  # t5: no FLOPs
    (note,) = notes(ax)
    assert "t3" in note and "100M FLOPs" in note
    assert_png(save_png(fig, tmp_path / "flops.png"))


def test_tradeoff_without_landed_trials_has_no_annotation() -> None:
    pts = [point("a", 0.5, 0.9), point("b", 0.6, 0.8)]
    fig = tradeoff_figure(pts, x="sparsity", target=0.9, tolerance=0.01)
    assert notes(fig.axes[0]) == []


def test_best_landed_is_the_most_accurate_landed_trial() -> None:
    pts = [
        point("front", 0.95, 0.95),  # better, but missed the band
        point("sparser", 0.91, 0.90, landed=True),
        point("accurate", 0.89, 0.92, landed=True),
    ]
    fig = tradeoff_figure(pts, x="sparsity", target=0.9, tolerance=0.01)
    (note,) = notes(fig.axes[0])
    assert "accurate" in note and "92.00%" in note and "89.0%" in note


@pytest.mark.parametrize("dpi", [72, 110])
@pytest.mark.parametrize(
    ("x", "dense", "scale"),
    [("sparsity", None, 1.0), ("flops", 1.0e9, 1.0), ("flops", None, 1e-5), ("flops", 3e3, 1e-6)],
)
def test_job_figures_fit_their_canvas(x: str, dense: float | None, scale: float, dpi: int) -> None:
    pts = [
        TradeoffPoint(p.trial_id, p.sparsity, p.accuracy, p.flops and p.flops * scale, p.landed)
        for p in trials()
    ]
    title = "digits_cnn on digits, target 90.0%"
    fig = tradeoff_figure(pts, x=x, target=0.9, tolerance=0.02, dense_flops=dense, title=title)
    assert_laid_out(fig, dpi)


@pytest.mark.parametrize("dpi", [72, 110])
@pytest.mark.parametrize("dense", [None, 2.0e6])
def test_comparison_figure_fits_its_canvas(dense: float | None, dpi: int) -> None:
    methods = [
        MethodPoint("str", 3.1e5, 0.9712, 0.004, 0.902),
        MethodPoint("gmp", 3.4e5, 0.9650, 0.011, 0.9),
        MethodPoint("global_magnitude", 2.2e5, 0.951, 0.0, 0.899),
    ]
    fig = comparison_figure(methods, dense_flops=dense, title="digits_cnn on digits at 90.0%")
    assert [t.get_text() for t in fig.axes[0].texts] == ["str", "gmp", "global_magnitude"]
    # method names sit beside their points and may run past the axes, not off the canvas
    assert_laid_out(fig, dpi, texts_inside=False)


# --------------------------------------------------------------------------- empty and saving


@pytest.mark.parametrize(
    "make",
    [
        pytest.param(lambda: budget_figure({}, title="t"), id="budget"),
        pytest.param(lambda: dynamics_figure([], title="t"), id="dynamics"),
        pytest.param(
            lambda: tradeoff_figure(
                [point("a", 0.5, math.nan)], x="flops", target=0.9, tolerance=0
            ),
            id="tradeoff",
        ),
    ],
)
def test_empty_inputs_render_a_note(make: Callable[[], Figure], tmp_path: Path) -> None:
    fig = make()
    assert len(fig.axes) == 1 and not fig.axes[0].axison
    assert fig.axes[0].texts
    assert_png(save_png(fig, tmp_path / "empty.png"), min_std=1.0)  # just the note


def test_save_png_creates_parents_and_honours_dpi(tmp_path: Path) -> None:
    fig = budget_figure(make_layers(3))
    small = save_png(fig, str(tmp_path / "a" / "b" / "small.png"), dpi=50)
    large = save_png(fig, tmp_path / "large.png", dpi=100)
    assert small == tmp_path / "a" / "b" / "small.png" and small.is_file()
    with Image.open(small) as s, Image.open(large) as big:
        assert big.width > 1.5 * s.width


def test_save_png_drops_the_alpha_channel_of_opaque_figures_only(tmp_path: Path) -> None:
    opaque = save_png(budget_figure(make_layers(3)), tmp_path / "opaque.png", dpi=50)
    see_through = budget_figure(make_layers(3))
    see_through.patch.set_alpha(0.0)
    for ax in see_through.axes:
        ax.patch.set_alpha(0.0)
    clear = save_png(see_through, tmp_path / "clear.png", dpi=50)
    with Image.open(opaque) as a, Image.open(clear) as b:
        assert a.mode == "RGB" and b.mode == "RGBA"
        assert a.size == b.size == (450, 150)  # 9 x 3 inches at 50 dpi
        assert np.asarray(b)[0, 0, 3] == 0


def test_figures_render_identically_from_several_threads(tmp_path: Path) -> None:
    def render(i: int) -> bytes:
        fig = dynamics_figure(make_history(3), title="same")
        return save_png(fig, tmp_path / f"{i}.png", dpi=60).read_bytes()

    with ThreadPoolExecutor(max_workers=4) as pool:
        images = list(pool.map(render, range(4)))
    assert all(image == images[0] for image in images)


def test_save_png_draws_text_unhinted_and_leaves_matplotlibs_settings_alone(
    tmp_path: Path,
) -> None:
    before = dict(matplotlib.rcParams)
    fig = dynamics_figure(make_history(3), title="hinting")
    saved = np.asarray(Image.open(save_png(fig, tmp_path / "figure.png", dpi=60)))
    assert dict(matplotlib.rcParams) == before
    for hinting, same in (("no_hinting", True), ("force_autohint", False)):
        with matplotlib.rc_context({"text.hinting": hinting}):
            canvas = FigureCanvasAgg(fig)
            canvas.draw()  # type: ignore[no-untyped-call]
        drawn = np.asarray(canvas.buffer_rgba())[..., :3]  # type: ignore[no-untyped-call]
        assert np.array_equal(drawn, saved) is same, hinting


def test_import_leaves_pyplot_unloaded() -> None:
    code = "import sys, workers.plots; sys.exit('matplotlib.pyplot' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0
