"""PNG figures of a sparsity search: per-layer budget, training dynamics, accuracy trade-off.

The dynamics view follows Figure 1 of STR (Kusupati et al., ICML 2020, arXiv 2002.03231). Figures
are plain :class:`~matplotlib.figure.Figure` objects on an Agg canvas, never ``pyplot``: no display,
no global figure registry, safe to build from several threads. Sparsity and accuracy are fractions
in [0, 1], shown as percentages.
"""

from __future__ import annotations

import math
import os
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, Generic, Literal, TypeVar

import numpy as np
from matplotlib import colormaps, rc_context
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.cm import ScalarMappable
from matplotlib.colors import ListedColormap, Normalize
from matplotlib.figure import Figure
from matplotlib.font_manager import FontProperties
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.textpath import text_to_path
from matplotlib.ticker import (
    EngFormatter,
    FuncFormatter,
    MaxNLocator,
    NullLocator,
    PercentFormatter,
)
from PIL import Image

from str_core.train.callbacks import EpochMetrics, LayerSnapshot
from workers.png import write_png

__all__ = [
    "BudgetFigure",
    "DynamicsFigure",
    "MethodPoint",
    "RedrawableFigure",
    "TradeoffPoint",
    "budget_figure",
    "comparison_figure",
    "dynamics_figure",
    "pareto_front",
    "save_png",
    "tradeoff_figure",
]

XAxis = Literal["sparsity", "flops"]
MAX_LEGEND_LAYERS = 12  # above this, layers are told apart by a depth colour bar
MAX_LABELLED_BARS = 20  # above this, bars lose their value labels and tick labels shrink
_STR_COLOR, _DENSE_COLOR, _LANDED_COLOR, _OTHER_COLOR = "C0", "0.65", "C2", "0.45"
_NOTE_STYLE: dict[str, Any] = {
    "textcoords": "offset points",
    "fontsize": 8,
    "arrowprops": {"arrowstyle": "->", "color": "0.2"},
    "bbox": {"boxstyle": "round", "fc": "white", "ec": "0.7", "alpha": 0.9},
}


@dataclass(frozen=True)
class TradeoffPoint:
    """One finished trial on the trade-off plot; ``landed``: its sparsity is within tolerance."""

    trial_id: str
    sparsity: float
    accuracy: float
    flops: float | None
    landed: bool


def _percent() -> PercentFormatter:
    return PercentFormatter(xmax=1.0)  # a formatter binds to one axis: never share an instance


def _new_figure(width: float, height: float) -> Figure:
    fig = Figure(figsize=(width, height))
    FigureCanvasAgg(fig)
    return fig


# Every trial draws a budget and a dynamics figure, every job two trade-off figures. Constrained
# layout would take about a third of their drawing time, so figures get margins from the sizes
# of their texts instead.
_EDGE = 0.1  # inches of white between a text and the canvas edge
_TICK_LABEL = 0.27  # inches: a 10-pt tick label row with its tick and padding
_AXIS_LABEL = 0.22  # inches: a 10-pt axis label with its padding
_TITLE = 0.3  # inches: the 12-pt figure title with its padding


def _text_width(texts: Sequence[str], size: float) -> float:
    """Width in inches of the widest of ``texts`` set in the default font at ``size`` points,
    with 10% to spare: hinted glyphs come out wider at some resolutions (6% at 110 dpi)."""
    prop = FontProperties(size=size)
    widths = (text_to_path.get_text_width_height_descent(t, prop, ismath=False)[0] for t in texts)
    return 1.1 * max(widths, default=0.0) / 72.0


def _margins(
    fig: Figure,
    *,
    left: float,
    right: float,
    bottom: float,
    top: float,
    gap: float,
    rows: int = 1,
    cols: int = 1,
) -> dict[str, float]:
    """``gridspec_kw`` of a ``rows`` × ``cols`` grid with these margins and ``gap`` between
    neighbouring cells, all in inches."""
    width, height = fig.get_size_inches()

    def space(span: float, cells: int) -> float:  # gridspec counts gaps in mean cell sizes
        return gap / ((span - (cells - 1) * gap) / cells) if cells > 1 else 0.0

    return {
        "left": left / width,
        "right": 1.0 - right / width,
        "bottom": bottom / height,
        "top": 1.0 - top / height,
        "wspace": space(width - left - right, cols),
        "hspace": space(height - top - bottom, rows),
    }


def _title(fig: Figure, title: str) -> None:
    """The figure title, its top :data:`_EDGE` below the canvas top (figures without a layout
    engine)."""
    fig.suptitle(title, y=1.0 - _EDGE / fig.get_size_inches()[1], va="top")


def _fit_one_axes(fig: Figure, ax: Axes, *, top_axis: bool, title: str) -> None:
    """Place a figure's single axes from the widths of its tick labels at the current limits
    (y labels on the left, half an x label past the right end), with room for a second x axis
    on top when ``top_axis``, and set the title."""

    def labels(axis: Any, limits: tuple[float, float]) -> list[str]:
        low, high = sorted(limits)
        ticks = [t for t in axis.get_major_locator()() if low <= t <= high]
        return [str(label) for label in axis.get_major_formatter().format_ticks(ticks)]

    width, height = fig.get_size_inches()
    ticks = 0.1  # inches: a tick and its padding beside a tick label
    left = _EDGE + _AXIS_LABEL + _text_width(labels(ax.yaxis, ax.get_ylim()), 10) + ticks
    right = _EDGE + _text_width(labels(ax.xaxis, ax.get_xlim()), 10) / 2
    bottom = _EDGE + _TICK_LABEL + _AXIS_LABEL
    top = _EDGE + _TITLE + (_TICK_LABEL + _AXIS_LABEL if top_axis else 0.0)
    ax.set_position(
        (left / width, bottom / height, 1 - (left + right) / width, 1 - (bottom + top) / height)
    )
    _title(fig, title)


def _placeholder(fig: Figure, message: str, title: str) -> Figure:
    ax = fig.add_subplot()
    ax.set_axis_off()
    ax.text(0.5, 0.5, message, ha="center", va="center", transform=ax.transAxes, color="0.4")
    fig.suptitle(title)
    return fig


# FreeType's hinting snaps glyphs to the pixel grid; without it a trial's two figures draw 12-17%
# faster (text is a fifth of their time) and look the same at our resolution. Matplotlib reads the
# setting from its global rcParams while drawing, so figures are drawn one at a time: a thread
# that restored the setting would change another's drawing (drawing holds the interpreter lock
# anyway, so threads could not draw side by side).
_DRAWING = threading.Lock()


def save_png(fig: Figure, path: str | os.PathLike[str], *, dpi: int = 110) -> Path:
    """Write ``fig`` as a PNG, creating parent directories.

    Args:
        fig: the figure to render (rendered through Agg whatever canvas it had).
        path: destination file.
        dpi: resolution in dots per inch.

    Returns:
        The path written.
    """
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.set_dpi(dpi)
    canvas = FigureCanvasAgg(fig)
    with _DRAWING, rc_context({"text.hinting": "no_hinting"}):
        canvas.draw()  # type: ignore[no-untyped-call]
    pixels = np.asarray(canvas.buffer_rgba())  # type: ignore[no-untyped-call]
    # An opaque figure (all of ours: white face) goes out as RGB: a quarter fewer bytes to filter
    # and compress, and a 10% smaller file. Pillow drops the channel in a fraction of the time
    # NumPy takes to copy a strided slice.
    if bool((pixels[..., 3] == 255).all()):
        pixels = np.asarray(Image.fromarray(pixels).convert("RGB"))
    return write_png(out, pixels)


def _overall_sparsity(layers: Mapping[str, LayerSnapshot]) -> float:
    total = sum(s.params for s in layers.values())
    return 1.0 - sum(s.nonzero for s in layers.values()) / total if total else 0.0


Data = TypeVar("Data")


class RedrawableFigure(ABC, Generic[Data]):
    """A figure built for some data that can be drawn again for other data of the same
    :meth:`key_of`: only what differs is set again, and the axes, their ticks and texts are
    reused (building them is about half the time of drawing a trial figure).

    Attributes:
        figure: the figure.
        key: what the figure's layout was built for.
    """

    figure: Figure
    key: Hashable

    @abstractmethod
    def __init__(self, data: Data, *, title: str = "") -> None: ...

    @staticmethod
    @abstractmethod
    def key_of(data: Data) -> Hashable:
        """What a figure built for ``data`` can be redrawn for."""

    def update(self, data: Data, *, title: str = "") -> None:
        """Show ``data`` and ``title`` instead; the result is the figure built for them.

        Raises:
            ValueError: when ``data`` has another :meth:`key_of` than the figure's.
        """
        if self.key_of(data) != self.key:
            raise ValueError(f"a {type(self).__name__} is redrawn for the same layers only")
        if not data:  # the placeholder's title
            self.figure.suptitle(title)
        else:
            self._show(data, title)

    @abstractmethod
    def _show(self, data: Data, title: str) -> None:
        """Set what differs between the figures of ``data`` (not empty) of the same key."""


def budget_figure(layers: Mapping[str, LayerSnapshot], *, title: str = "") -> Figure:
    """Per-layer sparsity budget: horizontal bars in module order from the top.

    Left panel: each layer's sparsity (dense layers grey) and the overall, weight-weighted
    sparsity as a dashed line. Right panel: each layer's parameter count on a log scale. The
    figure grows with the layer count, so ResNet-50's 54 layers stay legible.

    Args:
        layers: per-layer snapshot keyed by module name, in module order.
        title: figure title.

    Returns:
        The figure; ``fig.axes[0]`` holds the sparsity bars, ``fig.axes[1]`` the sizes.
    """
    return BudgetFigure(layers, title=title).figure


class BudgetFigure(RedrawableFigure[Mapping[str, LayerSnapshot]]):
    """The figure of :func:`budget_figure`, redrawn for another trial of the same layers (names,
    sizes, which are STR layers: :meth:`key_of`)."""

    def __init__(self, layers: Mapping[str, LayerSnapshot], *, title: str = "") -> None:
        self.key = self.key_of(layers)
        n, snaps = len(layers), list(layers.values())
        fig = self.figure = _new_figure(9.0, max(3.0, 1.4 + 0.2 * n))
        if n == 0:
            _placeholder(fig, "no prunable layers", title)
            return
        few = n <= MAX_LABELLED_BARS
        name_size = 9 if few else 7
        grid = _margins(
            fig,
            left=_EDGE + _text_width(list(layers), name_size) + 0.1,  # names, their ticks and pad
            right=0.3,  # half the last size label
            bottom=_EDGE + 0.3 + _TICK_LABEL + _AXIS_LABEL,  # legend row, ticks, axis label
            top=_EDGE + _TITLE + (0.0 if few else _TICK_LABEL),
            gap=0.2,
            cols=2,
        )
        ax_s, ax_p = fig.subplots(1, 2, sharey=True, width_ratios=[3, 1], gridspec_kw=grid)
        colors = [_DENSE_COLOR if s.threshold is None else _STR_COLOR for s in snaps]
        self._bars = ax_s.barh(range(n), [s.sparsity for s in snaps], color=colors, height=0.75)
        sparsity_labels = [f"{s.sparsity:.1%}" for s in snaps]
        self._labels = (
            ax_s.bar_label(self._bars, labels=sparsity_labels, padding=2, fontsize=8) if few else []
        )
        overall = _overall_sparsity(layers)
        self._overall = ax_s.axvline(overall, color="C3", linestyle="--", label="overall")
        handles = [self._overall, Patch(color=_STR_COLOR, label="STR layer")]
        if _DENSE_COLOR in colors:
            handles.append(Patch(color=_DENSE_COLOR, label="dense layer"))
        legend = fig.legend(handles=handles, loc="lower center", ncols=3, fontsize=8, frameon=False)
        self._overall_text = legend.get_texts()[0]
        ax_s.set(xlim=(0.0, 1.1 if few else 1.05), xlabel="sparsity")
        ax_s.xaxis.set_major_formatter(_percent())
        ax_s.tick_params(axis="x", labeltop=not few)  # a tall figure gets a scale at the top too
        ax_s.set_yticks(range(n), list(layers), fontsize=name_size)
        ax_s.invert_yaxis()  # shared with the right panel
        sizes = ax_p.barh(range(n), [s.params for s in snaps], color="0.5", height=0.75)
        ax_p.set(xscale="log", xlabel="parameters")
        # plain 1k/10k labels on the decades (mathtext is slow to draw) and each layer's exact
        # count on its bar; no minor ticks: their ~30 tick objects were a fifth of the figure's time
        ax_p.xaxis.set_major_formatter(EngFormatter(sep=""))
        ax_p.xaxis.set_minor_locator(NullLocator())
        if few:
            labels = [f"{s.params:,}" for s in snaps]
            ax_p.bar_label(sizes, labels=labels, padding=2, fontsize=8)
            panel = ax_p.get_position().width * fig.get_size_inches()[0]
            widths = [_text_width([label], 8) + 2 / 72 for label in labels]  # with the padding
            ax_p.set_xlim(_log_room([s.params for s in snaps], widths, panel))
        ax_p.tick_params(axis="y", left=False)
        for ax in (ax_s, ax_p):
            ax.grid(axis="x", alpha=0.3)
            ax.margins(y=0.5 / n)
        self.update(layers, title=title)

    @staticmethod
    def key_of(layers: Mapping[str, LayerSnapshot]) -> Hashable:
        """Each layer's name, size and whether it is dense, in order."""
        return tuple((name, s.params, s.threshold is None) for name, s in layers.items())

    def _show(self, layers: Mapping[str, LayerSnapshot], title: str) -> None:
        snaps = list(layers.values())
        labels = self._labels or [None] * len(snaps)
        for bar, label, snap in zip(self._bars, labels, snaps, strict=True):
            bar.set_width(snap.sparsity)
            if label is not None:  # at the bar's end, as bar_label puts it
                label.set_text(f"{snap.sparsity:.1%}")
                label.xy = (snap.sparsity, label.xy[1])
        overall = _overall_sparsity(layers)
        self._overall.set_xdata([overall, overall])
        self._overall_text.set_text(f"overall {overall:.2%}")
        _title(self.figure, title or f"Per-layer sparsity budget ({len(snaps)} layers)")


def _log_room(
    values: Sequence[float], widths: Sequence[float], panel: float
) -> tuple[float, float]:
    """x-limits of a log-scale bar panel ``panel`` inches wide in which each bar's label,
    ``widths`` inches long, ends inside the panel; the shortest bar spans a factor 2.

    On a log axis from ``L`` to ``R`` a bar of value ``v`` ends ``(ln v − ln L) / (ln R − ln L)``
    of the way across, so its label fits when ``ln R ≥ (ln v − f ln L) / (1 − f)`` with ``f``
    the label's share of the panel (at most 0.8: a label wider than that cannot fit beside a
    bar anyway).
    """
    low = math.log(max(min(values), 1.0) / 2)
    right = math.log(max(*values, 1.0)) + 0.05
    for value, width in zip(values, widths, strict=True):
        share = min(width / panel, 0.8)
        right = max(right, (math.log(max(value, 1.0)) - share * low) / (1 - share))
    return math.exp(low), math.exp(right)


def _series(history: Sequence[EpochMetrics], name: str, field: str) -> list[float]:
    values = [getattr(m.layers[name], field) if name in m.layers else None for m in history]
    return [math.nan if v is None else float(v) for v in values]


def _threshold_scale(values: Sequence[float]) -> str:
    finite = [v for v in values if math.isfinite(v)]
    spread = bool(finite) and min(finite) > 0 and max(finite) / min(finite) > 100
    return "log" if spread else "linear"


def dynamics_figure(history: Sequence[EpochMetrics], *, title: str = "") -> Figure:
    """Per-layer sparsity and threshold g(s) over epochs (STR paper, Figure 1 style).

    Layers are coloured by depth; a legend names them up to ``MAX_LEGEND_LAYERS``, a colour bar
    shows depth beyond. The overall sparsity is a thick black line. The threshold panel shows STR
    layers only, on a log scale when thresholds span more than two decades.

    Args:
        history: the trainer's per-epoch metrics, in epoch order.
        title: figure title.

    Returns:
        The figure; ``fig.axes[0]`` holds sparsity, ``fig.axes[1]`` thresholds.
    """
    return DynamicsFigure(history, title=title).figure


_DynamicsKey = tuple[tuple[tuple[str, bool], ...], bool]


class DynamicsFigure(RedrawableFigure[Sequence[EpochMetrics]]):
    """The figure of :func:`dynamics_figure`, redrawn for another history of the same layers
    (names, which have thresholds, whether epochs are marked: :meth:`key_of`)."""

    key: _DynamicsKey

    def __init__(self, history: Sequence[EpochMetrics], *, title: str = "") -> None:
        self.key = self.key_of(history)
        fig = self.figure = _new_figure(9.0, 6.5)
        self._sparsity: list[tuple[str, Line2D]] = []
        self._thresholds: list[tuple[str, Line2D]] = []
        if not history:
            _placeholder(fig, "no epochs", title)
            return
        names = [name for name, _ in self.key[0]]
        legend = len(names) <= MAX_LEGEND_LAYERS
        grid = _margins(
            fig,
            left=_EDGE + _AXIS_LABEL + 0.55,  # axis label and tick labels of up to 7 characters
            # the legend (handle, padding, names) or the depth colour bar's labels
            right=_EDGE + (_text_width([*names, "overall"], 8) + 0.6 if legend else 0.6),
            bottom=_EDGE + _TICK_LABEL + _AXIS_LABEL,
            top=_EDGE + _TITLE,
            gap=0.2,
            rows=2,
        )
        ax_s, ax_t = self._axes = fig.subplots(2, 1, sharex=True, gridspec_kw=grid)
        cmap = ListedColormap(colormaps["viridis"](np.linspace(0.0, 0.9, 256)))  # no pale yellow
        norm = Normalize(1, max(len(names), 2))
        style: dict[str, Any] = {"marker": "o", "markersize": 3} if self.key[1] else {}
        for depth, (name, has_threshold) in enumerate(self.key[0], start=1):
            color = cmap(norm(depth))
            self._sparsity.append((name, *ax_s.plot([], [], color=color, label=name, **style)))
            if has_threshold:  # an STR layer
                self._thresholds.append((name, *ax_t.plot([], [], color=color, **style)))
        self._overall, *_ = ax_s.plot([], [], color="black", lw=2.5, label="overall", **style)
        ax_s.set(ylabel="sparsity", ylim=(0.0, 1.0))
        ax_s.yaxis.set_major_formatter(_percent())
        ax_t.set(ylabel="threshold g(s)", xlabel="epoch")
        # at most 7 ticks per axis: every tick is a handful of artists to create and draw, and
        # Matplotlib's default of up to 10 made the ticks a fifth of this figure's time
        ax_t.xaxis.set_major_locator(MaxNLocator(nbins=6, integer=True, steps=[1, 2, 5, 10]))
        ax_t.yaxis.set_major_locator(MaxNLocator(nbins=5))
        if not self._thresholds:
            note = "no STR layers"
            ax_t.text(0.5, 0.5, note, ha="center", va="center", transform=ax_t.transAxes)
        for ax in (ax_s, ax_t):
            ax.grid(alpha=0.3)
        if legend:
            top_right = (1.0 - _EDGE / fig.get_size_inches()[0], grid["top"])
            fig.legend(*ax_s.get_legend_handles_labels(), loc="upper right",
                       bbox_to_anchor=top_right, borderaxespad=0.0, fontsize=8)  # fmt: skip
        else:
            bar = fig.colorbar(ScalarMappable(norm=norm, cmap=cmap), ax=[ax_s, ax_t], aspect=40)
            bar.set_label(f"layer depth (1 = {names[0]}, {len(names)} = {names[-1]})")
            ax_s.legend(handles=[self._overall], loc="lower right", fontsize=8)
        self.update(history, title=title)

    @staticmethod
    def key_of(history: Sequence[EpochMetrics]) -> _DynamicsKey:
        """The layers in order, each with whether it has a threshold in any epoch (an STR layer),
        and whether the epochs are few enough to be marked (at most 20)."""
        names = list(dict.fromkeys(name for m in history for name in m.layers))
        has_threshold = [
            any(name in m.layers and m.layers[name].threshold is not None for m in history)
            for name in names
        ]
        return tuple(zip(names, has_threshold, strict=True)), len(history) <= 20

    def _show(self, history: Sequence[EpochMetrics], title: str) -> None:
        epochs = [m.epoch for m in history]
        for name, line in self._sparsity:
            line.set_data(epochs, _series(history, name, "sparsity"))
        all_thresholds: list[float] = []
        for name, line in self._thresholds:
            thresholds = _series(history, name, "threshold")
            line.set_data(epochs, thresholds)
            all_thresholds += thresholds
        self._overall.set_data(
            epochs, [m.scalars.get("sparsity", _overall_sparsity(m.layers)) for m in history]
        )
        ax_s, ax_t = self._axes
        scale = _threshold_scale(all_thresholds)
        if scale != ax_t.get_yscale():
            ax_t.set_yscale(scale)
            if scale == "linear":
                ax_t.yaxis.set_major_locator(MaxNLocator(nbins=5))
        for ax in (ax_s, ax_t) if self._thresholds else (ax_s,):  # an empty panel keeps 0..1
            ax.relim()
            ax.autoscale_view()
        _title(self.figure, title or "Sparsity and threshold over training")


def _xvalue(p: TradeoffPoint, x: XAxis) -> float:
    value = p.sparsity if x == "sparsity" else p.flops
    return math.nan if value is None else value


def _goodness(p: TradeoffPoint, x: XAxis) -> tuple[float, float] | None:
    """Both coordinates to maximise, or ``None`` when the point cannot be placed."""
    value = _xvalue(p, x)
    if not (math.isfinite(value) and math.isfinite(p.accuracy)):
        return None
    return (value if x == "sparsity" else -value, p.accuracy)


def pareto_front(points: Sequence[TradeoffPoint], x: XAxis) -> list[TradeoffPoint]:
    """The non-dominated points of the accuracy trade-off.

    For ``"sparsity"`` higher sparsity and higher accuracy are better; for ``"flops"`` lower FLOPs
    and higher accuracy. A point is dominated when another is at least as good on both and
    strictly better on one, so exact duplicates are all kept. Points without a finite x (``flops``
    ``None``) or accuracy are skipped.

    Args:
        points: the trials.
        x: the quantity traded against accuracy.

    Returns:
        The front sorted by x, ties by ``trial_id``.
    """
    scored = [(g, p) for p in points if (g := _goodness(p, x)) is not None]
    front = [p for g, p in scored if not any(_dominates(o, g) for o, _ in scored)]
    return sorted(front, key=lambda p: (_xvalue(p, x), p.trial_id))


def _dominates(a: tuple[float, float], b: tuple[float, float]) -> bool:
    return a[0] >= b[0] and a[1] >= b[1] and a != b


def _flops_unit(values: Sequence[float]) -> tuple[float, str]:
    """Scale and prefix chosen so the smallest value reads at least 1 (343 M, not 0.343 G)."""
    smallest = min((v for v in values if v > 0), default=1.0)
    for scale, unit in ((1e9, "G"), (1e6, "M"), (1e3, "K")):
        if smallest >= scale:
            return scale, unit
    return 1.0, ""


def _scatter_trials(ax: Axes, points: Sequence[TradeoffPoint], x: XAxis) -> None:
    for landed, marker, color in ((True, "o", _LANDED_COLOR), (False, "x", _OTHER_COLOR)):
        group = [p for p in points if p.landed is landed]
        label = f"{'landed' if landed else 'other'} ({len(group)})"
        xs, ys = [_xvalue(p, x) for p in group], [p.accuracy for p in group]
        if group:
            ax.scatter(xs, ys, s=36, marker=marker, color=color, zorder=3, label=label)


def _format_x(
    ax: Axes, x: XAxis, xs: Sequence[float], dense: float | None
) -> Callable[[float], str]:
    """Label and format the x axis; returns how to print one x value."""
    if x == "sparsity":
        ax.set_xlabel("sparsity")
        ax.xaxis.set_major_formatter(_percent())
        return lambda v: f"{v:.1%}"
    scale, unit = _flops_unit(xs)
    ax.set_xlabel(f"FLOPs [{unit or 'count'}] (multiply-adds)")
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _pos: f"{v / scale:g}"))
    if dense:  # top axis: the same positions as fractions of the dense model
        scale_by = (partial(np.multiply, 1.0 / dense), partial(np.multiply, dense))
        top = ax.secondary_xaxis("top", functions=scale_by)
        top.xaxis.set_major_formatter(_percent())
        top.set_xlabel("fraction of dense FLOPs")
    return lambda v: f"{v / scale:.3g}{unit} FLOPs"


def _annotate_best(
    ax: Axes, points: Sequence[TradeoffPoint], x: XAxis, text: Callable[[float], str]
) -> None:
    landed = [p for p in points if p.landed]
    best = max(landed, key=lambda p: (p.accuracy, _goodness(p, x), p.trial_id), default=None)
    if best is None:
        return
    bx, (left, right) = _xvalue(best, x), ax.get_xlim()
    bottom, top = ax.get_ylim()
    on_right = bx > (left + right) / 2  # put the note towards the middle
    low = best.accuracy < (bottom + top) / 2  # and away from the x axis
    note = f"best landed: {best.trial_id}\n{best.accuracy:.2%} at {text(bx)}"
    offset = (-12 if on_right else 12, 12 if low else -28)
    ax.annotate(
        note,
        (bx, best.accuracy),
        offset,
        ha="right" if on_right else "left",
        va="bottom" if low else "top",
        **_NOTE_STYLE,
    )


def tradeoff_figure(
    points: Sequence[TradeoffPoint],
    *,
    x: XAxis,
    target: float,
    tolerance: float,
    dense_flops: float | None = None,
    title: str = "",
) -> Figure:
    """Accuracy against sparsity or FLOPs for every trial, with the Pareto front.

    Landed trials are green circles, the others grey crosses; the front is a step line and the
    best landed trial (highest accuracy) is annotated. Against sparsity the tolerance band
    ``[target - tolerance, target + tolerance]`` is shaded (``gid="tolerance-band"``) and the
    target drawn; against FLOPs the axis reads in K/M/G, with a top axis in fraction of
    ``dense_flops`` when given.

    Args:
        points: the trials.
        x: ``"sparsity"`` or ``"flops"``.
        target: target sparsity (fraction).
        tolerance: half-width of the landing band (fraction).
        dense_flops: FLOPs of the dense model.
        title: figure title.

    Returns:
        The figure.
    """
    fig = _new_figure(7.5, 5.0)
    placed = [p for p in points if _goodness(p, x) is not None]
    if not placed:
        return _placeholder(fig, f"no trials with accuracy and {x}", title)
    ax = fig.add_subplot()
    if x == "sparsity":
        band = ax.axvspan(target - tolerance, target + tolerance, color="C1", alpha=0.15)
        band.set(gid="tolerance-band", label=f"target ±{tolerance:.1%}")
        ax.axvline(target, color="C1", lw=1, label=f"target {target:.1%}")
    _scatter_trials(ax, placed, x)
    front = pareto_front(placed, x)
    xs, ys = [_xvalue(p, x) for p in front], [p.accuracy for p in front]
    where: Literal["pre", "post"] = "pre" if x == "sparsity" else "post"  # best reachable at x
    ax.step(xs, ys, where=where, color="C3", lw=1.5, zorder=2, label="Pareto front")
    text = _format_x(ax, x, [_xvalue(p, x) for p in placed], dense_flops)
    ax.yaxis.set_major_formatter(_percent())
    ax.set_ylabel("accuracy")
    ax.grid(alpha=0.3)
    _fit_one_axes(
        fig,
        ax,
        top_axis=bool(ax.child_axes),
        title=title or f"Accuracy vs {'sparsity' if x == 'sparsity' else 'FLOPs'}",
    )
    ax.legend(loc="best", fontsize=8)
    _annotate_best(ax, placed, x, text)
    return fig


@dataclass(frozen=True)
class MethodPoint:
    """One method of a comparison: mean accuracy (± std over seeds) at its mean FLOPs."""

    method: str
    flops: float
    accuracy: float
    accuracy_std: float
    sparsity: float


def comparison_figure(
    points: Sequence[MethodPoint], *, dense_flops: float | None = None, title: str = ""
) -> Figure:
    """Accuracy against FLOPs, one point per method with its seed-to-seed std as error bar.

    Each method is labelled with its name and sparsity; the axis reads in K/M/G, with a top axis
    in fraction of ``dense_flops`` when given.
    """
    fig = _new_figure(7.5, 5.0)
    if not points:
        return _placeholder(fig, "no method finished", title)
    ax = fig.add_subplot()
    for index, p in enumerate(points):
        ax.errorbar(
            p.flops,
            p.accuracy,
            yerr=p.accuracy_std,
            fmt="o",
            color=f"C{index % 10}",
            capsize=4,
            label=f"{p.method} ({p.sparsity:.1%} sparse)",
            gid=f"method-{p.method}",
        )
        ax.annotate(p.method, (p.flops, p.accuracy), xytext=(6, 4), textcoords="offset points")
    _format_x(ax, "flops", [p.flops for p in points], dense_flops)
    ax.yaxis.set_major_formatter(_percent())
    ax.set_ylabel("test accuracy (mean ± std over seeds)")
    ax.grid(alpha=0.3)
    _fit_one_axes(
        fig, ax, top_axis=bool(ax.child_axes), title=title or "Accuracy vs FLOPs by method"
    )
    ax.legend(loc="best", fontsize=8)
    return fig
