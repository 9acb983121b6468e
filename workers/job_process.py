"""One job's search in a child process, so the agent can always stop it and always survives it.

The agent never connects to Ray itself: it starts a child (multiprocessing's ``spawn``
context, a fresh interpreter) that runs :func:`workers.search.run_search` and sends back, over a
queue, every trial event and finally one outcome message. The child leads a process group of its
own (``setsid``), which holds its local Ray and every trial, so:

- a graceful stop is one SIGINT to the child: Ray Tune's own SIGINT handler is turned off
  (``TUNE_DISABLE_SIGINT_HANDLER``), so the interrupt reaches ``run_search`` as a
  ``KeyboardInterrupt``, which marks the job's MLflow run ``KILLED``; the experiment keeps the
  state Tune saved after the last reported epoch;
- a hard stop is SIGKILL to the whole group (the child, its raylet and trial workers at once);
- a crash of the search, of Ray or of the interpreter only ends the child.

The experiment lives under ``<storage>/<job id>``, so a job claimed again (another attempt, on this
or another agent sharing the storage) resumes its Tune experiment instead of starting over.
"""

from __future__ import annotations

import contextlib
import ctypes
import multiprocessing
import os
import queue
import signal
import sys
import traceback
from dataclasses import dataclass
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from workers.progress import SearchListener
    from workers.tracking import TrackingSettings


PR_SET_PDEATHSIG = 1

OutcomeKind = Literal["result", "error", "invalid", "interrupted", "crashed"]


@dataclass(frozen=True)
class Outcome:
    """How a job's search process ended.

    ``result``: the search ran to its end (``result`` is ``SearchResult.to_dict()``);
    ``invalid``: the spec cannot run here (unknown model or dataset, missing data folder);
    ``error``: the search raised; ``interrupted``: it was stopped by a SIGINT;
    ``crashed``: the process ended without saying how (killed, or the interpreter died).
    """

    kind: OutcomeKind
    result: dict[str, Any] | None = None
    error: str | None = None


def describe(exc: BaseException) -> str:
    """``Type: message`` of an exception (a KeyError's message without its quotes)."""
    message = exc.args[0] if isinstance(exc, KeyError) and exc.args else str(exc)
    return f"{type(exc).__name__}: {message}"


def job_storage(storage: str | Path, job_id: str) -> str:
    """The experiment storage of one job: ``<storage>/<job id>`` (a local folder or a URI)."""
    raw = str(storage)
    if "://" in raw:
        return f"{raw.rstrip('/')}/{job_id}"
    return str(Path(raw).expanduser().resolve() / job_id)


# ------------------------------------------------------------------------------ the child


def _scalars(values: dict[str, Any]) -> dict[str, Any]:
    """The plain scalar entries of a config or result (no spec, no per-layer metrics): small
    enough that each event is one atomic pipe write."""
    return {
        k: v
        for k, v in values.items()
        if "/" not in k and (v is None or isinstance(v, str | int | float | bool))
    }


class QueueListener:
    """A listener in the child that puts each trial event on the agent's queue."""

    def __init__(self, events: Any) -> None:
        self.events = events

    def _config(self, config: dict[str, Any]) -> dict[str, Any]:
        out = _scalars(config)
        if isinstance(config.get("tracking"), dict):
            out["tracking"] = _scalars(config["tracking"])
        return out

    def trial_started(self, trial_id: str, config: dict[str, Any]) -> None:
        self.events.put(("trial_started", trial_id, self._config(config)))

    def trial_result(self, trial_id: str, config: dict[str, Any], result: dict[str, Any]) -> None:
        self.events.put(("trial_result", trial_id, self._config(config), _scalars(result)))

    def trial_finished(self, trial_id: str, config: dict[str, Any], failed: bool) -> None:
        self.events.put(("trial_finished", trial_id, self._config(config), failed))


def _die_with_parent(parent: int) -> None:
    """Have the kernel SIGKILL this process when the agent dies (Linux ``PR_SET_PDEATHSIG``;
    Ray's processes do the same with their driver), so a killed agent leaves no search running
    that would race the agent taking the job over."""
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != parent:  # the agent died before the line above
        os._exit(1)


def _child(
    parent: int,
    job_id: str,
    spec: dict[str, Any],
    storage: str,
    address: str | None,
    tracking: TrackingSettings | None,
    events: Any,
) -> None:
    """The child's main: validate the spec, run the search, put one outcome on ``events``."""
    _die_with_parent(parent)
    os.setsid()
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    os.environ["TUNE_DISABLE_SIGINT_HANDLER"] = "1"
    try:
        outcome = _search(job_id, spec, storage, address, tracking, events)
    except KeyboardInterrupt:
        outcome = ("interrupted", None)
    events.put(("outcome", *outcome))
    events.close()
    events.join_thread()


def _search(
    job_id: str,
    spec_data: dict[str, Any],
    storage: str,
    address: str | None,
    tracking: TrackingSettings | None,
    events: Any,
) -> tuple[str, Any]:
    from pydantic import ValidationError

    from strsearch.spec import SearchSpec
    from workers.compare import check_comparison, run_job

    try:
        spec = SearchSpec.model_validate(spec_data)
        check_comparison(spec)
    except ValidationError as exc:
        errors = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        return "invalid", f"invalid spec: {errors}"
    except (KeyError, ValueError, OSError) as exc:
        return "invalid", describe(exc)
    try:
        result = run_job(
            spec,
            storage_path=storage,
            address=address,
            job_id=job_id,
            listener=QueueListener(events),
            tracking=tracking,
            resume=True,
        )
    except KeyboardInterrupt:
        raise
    except BaseException as exc:
        traceback.print_exc()
        return "error", describe(exc)
    return "result", result.to_dict()


# ----------------------------------------------------------------------------- the parent


class JobProcess:
    """The search of one job in a child process, seen from the agent.

    Args:
        job_id: the service's job id (names the job's storage and its MLflow runs).
        spec: the job's spec as JSON (validated in the child).
        storage: the agent's experiment storage; the job's is ``<storage>/<job_id>``.
        listener: receives the trial events the child relays (in :meth:`pump`).
        address: Ray cluster the child joins; ``None``: ``RAY_ADDRESS`` or a local Ray.
        tracking: MLflow settings of the search (default: the environment's).
    """

    def __init__(
        self,
        job_id: str,
        spec: dict[str, Any],
        storage: str | Path,
        listener: SearchListener,
        *,
        address: str | None = None,
        tracking: TrackingSettings | None = None,
    ) -> None:
        self.job_id = job_id
        self.spec = spec
        self.storage = job_storage(storage, job_id)
        self.listener = listener
        self.address = address
        self.tracking = tracking
        self._context = multiprocessing.get_context("spawn")
        self._events: Any = self._context.Queue()
        self._process: BaseProcess | None = None
        self._outcome: Outcome | None = None

    @property
    def pid(self) -> int | None:
        """The child's process id (also its process group id), once started."""
        return None if self._process is None else self._process.pid

    def start(self) -> None:
        """Start the child."""
        self._process = self._context.Process(
            target=_child,
            args=(
                os.getpid(),
                self.job_id,
                self.spec,
                self.storage,
                self.address,
                self.tracking,
                self._events,
            ),
            name=f"strsearch-job-{self.job_id}",
            daemon=False,
        )
        self._process.start()

    def alive(self) -> bool:
        """Whether the child still runs."""
        return self._process is not None and self._process.is_alive()

    def pump(self, timeout: float = 0.0) -> None:
        """Hand the events that arrived to the listener, waiting up to ``timeout`` for the first."""
        block = timeout > 0
        while True:
            try:
                message = self._events.get(block=block, timeout=timeout if block else None)
            except queue.Empty:
                return
            block = False
            self._dispatch(message)

    def _dispatch(self, message: tuple[Any, ...]) -> None:
        kind, *args = message
        if kind == "outcome":
            what, payload = args
            if what == "result":
                self._outcome = Outcome("result", result=payload)
            else:
                self._outcome = Outcome(what, error=payload)
        elif kind == "trial_started":
            self.listener.trial_started(args[0], args[1])
        elif kind == "trial_result":
            self.listener.trial_result(args[0], args[1], args[2])
        elif kind == "trial_finished":
            self.listener.trial_finished(args[0], args[1], args[2])

    def interrupt(self) -> None:
        """Ask the search to stop (SIGINT to the child): Tune's state stays resumable and the
        MLflow run is marked KILLED."""
        if self.alive() and self.pid is not None:
            os.kill(self.pid, signal.SIGINT)

    def kill(self) -> None:
        """Stop the child, its local Ray and its trials at once (SIGKILL to its group)."""
        if self.pid is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.pid, signal.SIGKILL)
        if self.alive():  # not yet the leader of its own group
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGKILL)
        if self._process is not None:
            self._process.join(5)

    def wait(self, timeout: float | None = None) -> bool:
        """Wait for the child to end, relaying its events; whether it ended."""
        if self._process is None:
            return True
        self._process.join(timeout)
        self.pump()
        return not self._process.is_alive()

    def outcome(self) -> Outcome:
        """How the child ended (call once it has ended; relays the events still queued)."""
        self.pump()
        if self._outcome is None and self._process is not None:
            self._process.join(1)
            self.pump(0.5)
        if self._outcome is not None:
            return self._outcome
        code = None if self._process is None else self._process.exitcode
        return Outcome("crashed", error=f"the search process ended with exit code {code}")

    def close(self) -> None:
        """Release the queue (after the child ended); kills a child still running."""
        if self.alive():
            self.kill()
        self._events.close()
        self._events.cancel_join_thread()
