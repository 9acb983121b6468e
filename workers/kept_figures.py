"""A trial's figures drawn on the ones the previous trial in the same process drew.

Every trial writes a budget and a dynamics figure at its end, where they are most of the time
tracking adds to the trial. A search's trials of one model share their layers, and a Ray actor
runs one trial after another, so each kind of figure is kept after it is written and redrawn for
the next trial of the same layers (:class:`workers.plots.RedrawableFigure`): building a figure's
axes and their ticks is about half of drawing it. A trial of other layers builds a new figure.
The files are those a newly built figure gives, pixel for pixel
(``tests/workers/test_kept_figures.py``).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Generic

from str_core.train.callbacks import EpochMetrics, LayerSnapshot
from workers.plots import BudgetFigure, Data, DynamicsFigure, RedrawableFigure, save_png

__all__ = ["BUDGET", "DYNAMICS", "KeptFigure"]


class KeptFigure(Generic[Data]):
    """The last figure of one kind this process wrote, to be redrawn for the next data.

    Args:
        kind: the kind of figure.
    """

    def __init__(self, kind: type[RedrawableFigure[Data]]) -> None:
        self.kind = kind
        self.figure: RedrawableFigure[Data] | None = None
        self._lock = threading.Lock()  # one figure, updated and drawn by one thread at a time

    def save_png(self, data: Data, path: str | os.PathLike[str], *, title: str = "") -> Path:
        """Write the figure of ``data`` to ``path`` (see :func:`workers.plots.save_png`),
        redrawing the kept figure when it was built for the same :meth:`key_of
        <workers.plots.RedrawableFigure.key_of>`, else building and keeping a new one."""
        with self._lock:
            kept = self.figure
            if kept is not None and kept.key == self.kind.key_of(data):
                kept.update(data, title=title)
            else:
                kept = self.figure = self.kind(data, title=title)
            return save_png(kept.figure, path)


BUDGET: KeptFigure[Mapping[str, LayerSnapshot]] = KeptFigure(BudgetFigure)
"""A trial's per-layer budget figure (``budget.png``)."""
DYNAMICS: KeptFigure[Sequence[EpochMetrics]] = KeptFigure(DynamicsFigure)
"""A trial's sparsity and threshold dynamics figure (``dynamics.png``)."""
