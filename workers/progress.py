"""Live progress of a search: trial events relayed from Ray Tune to a listener in the driver.

Ray Tune pickles its callbacks with the experiment and unpickles them on ``Tuner.restore``, so a
callback cannot hold a live display. :class:`ProgressRelay` holds only the experiment's name and
forwards each event to the listener registered under that name in this process, which works the
same for a fresh and a restored experiment.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from typing import Any, Protocol

from ray import tune


class SearchListener(Protocol):
    """Receives trial events of a running search (called in the driver process)."""

    def trial_started(self, trial_id: str, config: dict[str, Any]) -> None:
        """A trial was started (or restarted)."""

    def trial_result(self, trial_id: str, config: dict[str, Any], result: dict[str, Any]) -> None:
        """A trial reported an epoch."""

    def trial_finished(self, trial_id: str, config: dict[str, Any], failed: bool) -> None:
        """A trial ended, normally or with an error."""


class Fanout:
    """A listener that passes every event on to several listeners, in order."""

    def __init__(self, listeners: list[SearchListener]) -> None:
        self.listeners = listeners

    def trial_started(self, trial_id: str, config: dict[str, Any]) -> None:
        for listener in self.listeners:
            listener.trial_started(trial_id, config)

    def trial_result(self, trial_id: str, config: dict[str, Any], result: dict[str, Any]) -> None:
        for listener in self.listeners:
            listener.trial_result(trial_id, config, result)

    def trial_finished(self, trial_id: str, config: dict[str, Any], failed: bool) -> None:
        for listener in self.listeners:
            listener.trial_finished(trial_id, config, failed)


_LISTENERS: dict[str, SearchListener] = {}


@contextlib.contextmanager
def listening(name: str, listener: SearchListener | None) -> Iterator[None]:
    """Register ``listener`` for the experiment ``name`` while the block runs."""
    if listener is None:
        yield
        return
    _LISTENERS[name] = listener
    try:
        yield
    finally:
        _LISTENERS.pop(name, None)


def trial_view(config: Mapping[str, Any]) -> dict[str, Any]:
    """A trial's config as listeners see it: a comparison trial's ``row`` (method, seed, λ,
    ``s_init``) is lifted to the top level, so every trial carries the same keys."""
    row = config.get("row")
    if not isinstance(row, dict):
        return dict(config)
    return {k: v for k, v in config.items() if k != "row"} | row


class ProgressRelay(tune.Callback):
    """A picklable Tune callback that forwards trial events to the registered listener."""

    def __init__(self, name: str) -> None:
        self.name = name

    def _listener(self) -> SearchListener | None:
        return _LISTENERS.get(self.name)

    def on_trial_start(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        if (listener := self._listener()) is not None:
            listener.trial_started(trial.trial_id, trial_view(trial.config))

    def on_trial_result(
        self, iteration: int, trials: list[Any], trial: Any, result: dict[str, Any], **info: Any
    ) -> None:
        if (listener := self._listener()) is not None:
            listener.trial_result(trial.trial_id, trial_view(trial.config), result)

    def on_trial_complete(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        if (listener := self._listener()) is not None:
            listener.trial_finished(trial.trial_id, trial_view(trial.config), failed=False)

    def on_trial_error(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        if (listener := self._listener()) is not None:
            listener.trial_finished(trial.trial_id, trial_view(trial.config), failed=True)
