"""Loss and top-k accuracy of a classifier over a data loader."""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import Tensor, nn


@torch.no_grad()
def evaluate(
    model: nn.Module, batches: Iterable[tuple[Tensor, Tensor]], device: torch.device, top5: bool
) -> dict[str, float]:
    """Mean cross-entropy, top-1 and (optionally) top-5 accuracy in eval mode.

    Returns:
        ``{"loss", "acc"}`` plus ``"top5"`` when asked; accuracies are fractions in [0, 1].
    """
    was_training = model.training
    model.eval()
    total, loss_sum, correct1, correct5 = 0, 0.0, 0, 0
    for x, y in batches:
        x, y = x.to(device), y.to(device)
        logits = model(x)  # (N, classes)
        loss_sum += float(nn.functional.cross_entropy(logits, y, reduction="sum"))
        correct1 += int((logits.argmax(dim=1) == y).sum())
        if top5:
            k = min(5, logits.shape[1])
            correct5 += int((logits.topk(k, dim=1).indices == y[:, None]).any(dim=1).sum())
        total += y.numel()
    model.train(was_training)
    if total == 0:
        raise ValueError("evaluate: the data loader yielded no examples")
    out = {"loss": loss_sum / total, "acc": correct1 / total}
    if top5:
        out["top5"] = correct5 / total
    return out
