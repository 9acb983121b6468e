"""Keep an interrupted Tune experiment restorable when its driver was killed while saving.

Tune saves an experiment's state (``tuner.pkl``, ``experiment_state-*.json``, the search
generator's and our searcher's state) into a staging folder and copies it to the experiment's
storage in the background, overwriting the previous copies in place. A driver killed during that
copy leaves a truncated file there (seen: a 0-byte experiment state after a kill right after two
trials finished). Tune then fails to read it, logs the error and silently starts the experiment
over with half its state: new trials whose config lacks the search's spec, which all fail.

Two halves, both for experiments on a local or shared filesystem (object stores such as S3
write an object whole or not at all, so their copies are never truncated):

* :class:`StateBackup`, a Tune callback, copies every complete state file into
  :data:`BACKUP_DIR` inside the experiment, atomically, whenever the file changes;
* :func:`prepare_resume`, before ``Tuner.restore``, puts the last complete copy back in place of a
  truncated file. An experiment whose state cannot be repaired is set aside (renamed) so that a
  fresh experiment starts instead of a broken restore.
"""

from __future__ import annotations

import json
import logging
import os
import pickletools
import time
from pathlib import Path
from typing import Any

from ray import tune

from workers.files import write_atomically
from workers.searcher import SparsitySearcher

logger = logging.getLogger(__name__)

BACKUP_DIR = ".state-backup"
"""Folder, inside the experiment, of the last complete copy of each state file."""
STATE_FILES = (
    "tuner.pkl",
    "experiment_state-*.json",
    "search_gen_state-*.json",
    SparsitySearcher.CKPT_FILE_TMPL.format("*"),
)
"""The files Tune restores an experiment from (glob patterns)."""
CHECK_INTERVAL_S = 0.5
"""Least time between two looks at the experiment's state files during a run."""


def is_local(path: str) -> bool:
    """Whether an experiment path is a filesystem path (not a ``scheme://`` URI)."""
    return "://" not in path


def complete(path: Path) -> bool:
    """Whether a state file holds a whole JSON document or a whole pickle.

    A pickle is checked by walking its opcodes up to ``STOP`` (nothing is unpickled); a truncated
    copy of either kind fails. ``search_gen_state-*.json`` files are pickles despite their name.
    """
    try:
        data = path.read_bytes()
    except OSError:
        return False
    if not data:
        return False
    if data[:1] == b"\x80":  # pickle protocol 2 and later
        try:
            for _ in pickletools.genops(data):
                pass
        except ValueError:  # "pickle exhausted before seeing STOP" and other damage
            return False
        return True
    try:
        json.loads(data)
    except ValueError:
        return False
    return True


def state_files(experiment: Path) -> list[Path]:
    """The experiment's state files, sorted by name."""
    return sorted({p for pattern in STATE_FILES for p in experiment.glob(pattern) if p.is_file()})


def back_up(experiment: Path, seen: dict[str, tuple[int, int]]) -> list[str]:
    """Copy each state file that changed since ``seen`` and is complete into :data:`BACKUP_DIR`.

    Args:
        experiment: the experiment's folder.
        seen: ``name -> (mtime_ns, size)`` of the files already looked at; updated in place. A
            truncated file is not recorded, so it is looked at again once its copy completes.

    Returns:
        The names of the files copied.
    """
    copied = []
    for path in state_files(experiment):
        try:
            stat = path.stat()
        except OSError:
            continue
        mark = (stat.st_mtime_ns, stat.st_size)
        if seen.get(path.name) == mark or not complete(path):
            continue
        write_atomically(experiment / BACKUP_DIR / path.name, path.read_bytes())
        seen[path.name] = mark
        copied.append(path.name)
    return copied


def repair(experiment: Path) -> bool:
    """Replace each truncated state file by its last complete copy.

    A truncated file without a complete copy is renamed ``<name>.truncated``: Tune then reads
    an earlier session's file of that kind, if there is one.

    Returns:
        Whether the experiment can be restored: ``tuner.pkl`` and at least one experiment state
        are left, all complete.
    """
    for path in state_files(experiment):
        if complete(path):
            continue
        backup = experiment / BACKUP_DIR / path.name
        if complete(backup):
            write_atomically(path, backup.read_bytes())
            logger.warning(
                "%s was truncated (its driver was killed while saving it); "
                "restored its last complete copy",
                path,
            )
        else:
            # out of Tune's way, so that it reads an earlier session's file if there is one
            os.replace(path, path.with_name(path.name + ".truncated"))
            logger.warning("%s was truncated and has no complete copy; set it aside", path)
    names = [p.name for p in state_files(experiment)]
    return "tuner.pkl" in names and any(n.startswith("experiment_state-") for n in names)


def prepare_resume(path: str) -> bool:
    """Whether to restore the experiment at ``path`` (``Tuner.restore``) rather than start one.

    A local experiment's truncated state files are repaired first (:func:`repair`). One that
    cannot be repaired is renamed ``<name>.unrestorable-<UTC time>`` and a fresh experiment
    starts in its place: restoring it would make Tune start over with broken trials.
    """
    if not tune.Tuner.can_restore(path):
        return False
    if not is_local(path) or repair(Path(path)):
        return True
    aside = f"{path}.unrestorable-{time.strftime('%Y%m%d-%H%M%S', time.gmtime())}"
    os.replace(path, aside)
    logger.warning(
        "the saved state of %s is damaged beyond repair; moved it to %s and "
        "starting the experiment afresh",
        path,
        aside,
    )
    return False


class StateBackup(tune.Callback):
    """A Tune callback keeping :data:`BACKUP_DIR` up to date while an experiment runs.

    It looks at the state files at most every :data:`CHECK_INTERVAL_S` and once more at the end,
    after Tune's final save.
    """

    def __init__(self, experiment: str) -> None:
        self.experiment = experiment
        self._seen: dict[str, tuple[int, int]] = {}
        self._last = 0.0

    def __getstate__(self) -> dict[str, Any]:  # pickled into tuner.pkl: nothing run-specific
        return {"experiment": self.experiment}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.experiment = state["experiment"]
        self._seen = {}
        self._last = 0.0

    def on_step_end(self, iteration: int, trials: list[Any], **info: Any) -> None:
        now = time.monotonic()
        if now - self._last >= CHECK_INTERVAL_S:
            self._last = now
            back_up(Path(self.experiment), self._seen)

    def on_experiment_end(self, trials: list[Any], **info: Any) -> None:
        back_up(Path(self.experiment), self._seen)
