"""A mark in a trial's storage folder that tells its next attempt whether to look for its run.

A restarted trial must continue its MLflow run, so a trial looks its run up by tag before it
creates one. That lookup (``search_runs`` over the experiment's tags) is the dearest request a
trial makes, and its cost grows with the experiment's runs, while nearly every trial runs only
once. So a trial that has never tried to open its run skips it: before it creates the run, the
trial writes :data:`MARK_NAME` into its Tune trial folder, which every attempt of the trial
shares (restored experiments, retries, other nodes: the experiment's storage). An attempt that
finds the mark looks the run up as before; one that cannot write it fails before it creates a
run, so a missing mark always means that no earlier attempt created one.
"""

from __future__ import annotations

from dataclasses import dataclass

import pyarrow.fs  # type: ignore[import-untyped]

MARK_NAME = ".mlflow-run-opened"
"""The mark's file name in the trial's folder."""


@dataclass(frozen=True)
class RunMarker:
    """The mark of one trial: ``path`` on ``filesystem`` (Tune's storage filesystem, local or
    remote; picklable, so a data-parallel trial's driver hands it to its rank-0 worker)."""

    filesystem: pyarrow.fs.FileSystem
    path: str

    @classmethod
    def in_folder(cls, filesystem: pyarrow.fs.FileSystem, folder: str) -> RunMarker:
        """The mark of the trial whose storage folder is ``folder``."""
        return cls(filesystem, f"{folder.rstrip('/')}/{MARK_NAME}")

    def seen(self) -> bool:
        """Whether an attempt of the trial has written the mark."""
        info = self.filesystem.get_file_info(self.path)
        return bool(info.type != pyarrow.fs.FileType.NotFound)

    def write(self) -> None:
        """Write the mark (creating the folder if needed). Raises what the storage raises."""
        self.filesystem.create_dir(self.path.rsplit("/", 1)[0], recursive=True)
        with self.filesystem.open_output_stream(self.path) as out:
            out.write(b"an attempt of this trial has opened, or was about to open, its run\n")
