"""Loss and top-k accuracy of a classifier over a data loader."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import torch
from torch import Tensor, nn


@dataclass(frozen=True)
class EvalSums:
    """Additive evaluation totals: sums over examples, so shards evaluated apart add up.

    Attributes:
        loss: summed cross-entropy.
        correct1: examples whose top-1 prediction is right.
        correct5: examples whose label is among the top 5 (0 when top-5 is not measured).
        count: examples seen.
    """

    loss: float
    correct1: float
    correct5: float
    count: float

    def as_list(self) -> list[float]:
        """``[loss, correct1, correct5, count]`` (for a reduction over ranks)."""
        return [self.loss, self.correct1, self.correct5, self.count]

    def metrics(self, top5: bool) -> dict[str, float]:
        """Mean cross-entropy, top-1 and (optionally) top-5 accuracy.

        Raises:
            ValueError: if no example was seen.
        """
        if self.count == 0:
            raise ValueError("evaluate: the data loader yielded no examples")
        out = {"loss": self.loss / self.count, "acc": self.correct1 / self.count}
        if top5:
            out["top5"] = self.correct5 / self.count
        return out


@torch.no_grad()
def evaluation_sums(
    model: nn.Module, batches: Iterable[tuple[Tensor, Tensor]], device: torch.device, top5: bool
) -> EvalSums:
    """Summed cross-entropy and correct counts in eval mode (no error on an empty loader)."""
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
    return EvalSums(loss=loss_sum, correct1=correct1, correct5=correct5, count=total)


def evaluate(
    model: nn.Module, batches: Iterable[tuple[Tensor, Tensor]], device: torch.device, top5: bool
) -> dict[str, float]:
    """Mean cross-entropy, top-1 and (optionally) top-5 accuracy in eval mode.

    Returns:
        ``{"loss", "acc"}`` plus ``"top5"`` when asked; accuracies are fractions in [0, 1].

    Raises:
        ValueError: if the loader yields no examples.
    """
    return evaluation_sums(model, batches, device, top5).metrics(top5)
