"""workers: runs sparsity searches on Ray Tune around str_core.

``run_search(spec)`` is the entry point; the pieces are the searcher (``SparsitySearcher``), the
function trainable (``train_trial``) and the result types.
"""

from workers.result import SearchResult, TrialSummary
from workers.search import check_spec, ensure_ray, experiment_name, run_search
from workers.searcher import SparsitySearcher

__all__ = [
    "SearchResult",
    "SparsitySearcher",
    "TrialSummary",
    "check_spec",
    "ensure_ray",
    "experiment_name",
    "run_search",
]
