"""workers: runs sparsity searches on Ray Tune around str_core.

``run_search(spec)`` is the entry point; the pieces are the searcher (``SparsitySearcher``), the
function trainable (``train_trial``), the early-stopping rule (``BandStopRule``) and the result
types.
"""

from workers.early_stop import BandStopRule
from workers.result import SearchResult, TrialSummary
from workers.search import check_spec, ensure_ray, experiment_name, run_search
from workers.searcher import SparsitySearcher

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
