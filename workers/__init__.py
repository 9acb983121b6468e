"""workers: runs sparsity searches on Ray Tune around str_core.

``run_search(spec)`` is the entry point; the pieces are the searcher (``SparsitySearcher``), the
function trainable (``train_trial``), the early-stopping rule (``BandStopRule``) and the result
types.

The names below are imported on first use, so that processes needing only a light part of the
package (the agent, which supervises search processes) do not load PyTorch and Ray Tune.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from workers.early_stop import BandStopRule
    from workers.result import SearchResult, TrialSummary
    from workers.search import check_spec, ensure_ray, experiment_name, run_search
    from workers.searcher import SparsitySearcher

_HOMES = {
    "BandStopRule": "workers.early_stop",
    "SearchResult": "workers.result",
    "TrialSummary": "workers.result",
    "check_spec": "workers.search",
    "ensure_ray": "workers.search",
    "experiment_name": "workers.search",
    "run_search": "workers.search",
    "SparsitySearcher": "workers.searcher",
}

__all__ = [
    "BandStopRule",
    "SearchResult",
    "SparsitySearcher",
    "TrialSummary",
    "check_spec",
    "ensure_ray",
    "experiment_name",
    "run_search",
]


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'workers' has no attribute {name!r}")
    value = getattr(importlib.import_module(home), name)
    globals()[name] = value
    return value
