"""The gradual pruning schedule of Zhu & Gupta (2017, "To prune, or not to prune", arXiv
1710.01878): sparsity rises fast at first and levels off as the network adapts.

    s_t = s_f · (1 − (1 − (t − t0) / (t1 − t0))³)   for t0 ≤ t ≤ t1,

0 before ``t0`` and ``s_f`` after ``t1``.
"""

from __future__ import annotations


def cubic_sparsity(step: int, start_step: int, end_step: int, final: float) -> float:
    """The scheduled sparsity after optimizer step ``step``.

    Args:
        step: global optimizer step.
        start_step: ``t0``, where pruning starts (sparsity 0 up to here).
        end_step: ``t1``, where the sparsity reaches ``final``; may equal ``start_step`` (one
            jump to ``final``).
        final: ``s_f``, the sparsity at and after ``end_step``.

    Raises:
        ValueError: if ``end_step < start_step``.
    """
    if end_step < start_step:
        raise ValueError(f"end_step {end_step} is before start_step {start_step}")
    if step >= end_step:
        return final
    if step <= start_step:
        return 0.0
    progress = (step - start_step) / (end_step - start_step)
    return final * (1.0 - (1.0 - progress) ** 3)
