"""The agent: pulls jobs from the service's queue over HTTP and runs their searches on Ray.

One job at a time (a job's trials already fill the Ray cluster the agent drives)::

    claim ──▶ start the search process (workers/job_process.py)
          ──▶ until it ends: relay trial events into JobProgress; heartbeat with the progress
              every lease/3, and sooner (every progress_seconds) while the progress changes;
              the answer may ask to cancel; a 409 says the lease is lost
          ──▶ finish(succeeded | unreached | failed | cancelled) or, on shutdown, release

Every hand-off is explicit and survives any process being killed: a lease this agent stops
extending expires and the service queues the job again; the next agent's search resumes the Tune
experiment kept under ``<storage>/<job id>`` (storage that every agent of the queue shares, on a
cluster). SIGTERM or SIGINT stops the search gracefully (its state is saved, its MLflow run marked
killed), releases the job (queued again at once, the attempt not counted) and exits; a second one
kills the search at once.

The search runs in a child process (:mod:`workers.job_process`): the agent never connects to Ray
itself, so a search that crashes, hangs or must be stopped never takes the agent with it.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import time
from collections.abc import Mapping
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any, Literal

import httpx
from pydantic import ValidationError

from strsearch.client import ApiError, Claim, Client
from strsearch.spec import SearchSpec
from workers.job_process import JobProcess, Outcome
from workers.job_progress import JobProgress

if TYPE_CHECKING:
    from workers.tracking import TrackingSettings

logger = logging.getLogger(__name__)

DEFAULT_STORAGE = Path("runs") / "agent"
LEASE_LOST = (404, 409)
TOO_LARGE = (413, 422)

StopReason = Literal["cancel", "shutdown", "lease_lost"]


def default_name() -> str:
    """``<host>-<pid>``: tells the agents of one queue apart in the service's records."""
    return f"{socket.gethostname()}-{os.getpid()}"


def compact_result(result: Mapping[str, Any]) -> dict[str, Any]:
    """``result`` without the per-layer budgets and thresholds of the trials other than the
    best (those of the best stay in ``best``): a fallback when the full result is too large."""
    trials = [
        {k: v for k, v in trial.items() if k not in ("budget", "thresholds")}
        for trial in result.get("trials") or ()
    ]
    return dict(result) | {"trials": trials}


class Agent:
    """Runs the service's jobs, one at a time, until stopped.

    Args:
        client: the service (a worker token).
        name: how this agent calls itself when claiming; default ``<host>-<pid>``.
        storage: experiment storage; each job's lives in ``<storage>/<job id>``. Agents that
            may take over each other's jobs must share it.
        poll_seconds: wait between claims while the queue is empty.
        ray_address: Ray cluster the searches join; ``None``: ``RAY_ADDRESS`` or a local Ray.
        tracking: MLflow settings of the searches (default: the environment's).
        stop_grace_seconds: how long a stopped search may take to end before it is killed.
        progress_seconds: least time between two heartbeats that carry new progress (a trial
            that reported an epoch); without news the agent beats every lease/3 only.
    """

    def __init__(
        self,
        client: Client,
        *,
        name: str | None = None,
        storage: str | Path = DEFAULT_STORAGE,
        poll_seconds: float = 5.0,
        ray_address: str | None = None,
        tracking: TrackingSettings | None = None,
        stop_grace_seconds: float = 60.0,
        progress_seconds: float = 2.0,
    ) -> None:
        self.client = client
        self.name = name or default_name()
        self.storage = storage
        self.poll_seconds = poll_seconds
        self.ray_address = ray_address
        self.tracking = tracking
        self.stop_grace_seconds = stop_grace_seconds
        self.progress_seconds = progress_seconds
        self._stop_requested = False
        self._kill_requested = False

    # --- stopping ---

    def request_stop(self) -> None:
        """Stop after handing the current job back (safe to call from a signal handler); a
        second call kills the current search at once instead of waiting for it."""
        if self._stop_requested:
            self._kill_requested = True
        self._stop_requested = True

    def install_signal_handlers(self) -> None:
        """Make SIGTERM and SIGINT call :meth:`request_stop` (main thread only)."""

        def handler(signum: int, frame: FrameType | None) -> None:
            logger.info("%s received: stopping", signal.Signals(signum).name)
            self.request_stop()

        signal.signal(signal.SIGTERM, handler)
        signal.signal(signal.SIGINT, handler)

    @property
    def stopping(self) -> bool:
        """Whether a stop was requested."""
        return self._stop_requested

    # --- the loop ---

    def run_forever(self) -> None:
        """Claim and run jobs until a stop is requested; wait ``poll_seconds`` while the queue
        is empty or the service cannot be reached."""
        logger.info("agent %s polling %s", self.name, self.client.server)
        while not self._stop_requested:
            try:
                ran = self.run_once()
            except (httpx.HTTPError, ApiError) as exc:
                if isinstance(exc, ApiError) and exc.status in (401, 403):
                    raise
                logger.warning("claim failed: %s", exc)
                ran = False
            if not ran:
                self._sleep(self.poll_seconds)

    def run_once(self) -> bool:
        """Claim one job and run it to its end; ``False`` when the queue was empty (or a stop
        was requested).

        Raises:
            httpx.HTTPError: the service cannot be reached.
            ApiError: the service refused the claim (a token that is not a worker's: 401/403).
        """
        if self._stop_requested:
            return False
        claim = self.client.claim(self.name)
        if claim is None:
            return False
        logger.info(
            "claimed job %s (attempt %d, lease %gs)",
            claim.job["id"],
            claim.attempt,
            claim.lease_seconds,
        )
        outcome = self.run_job(claim)
        logger.info("job %s: %s", claim.job["id"], outcome)
        return True

    def _sleep(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while not self._stop_requested and time.monotonic() < deadline:
            time.sleep(min(0.2, max(0.0, deadline - time.monotonic())))

    # --- one job ---

    def run_job(self, claim: Claim) -> str:
        """Run a claimed job to its end and report it.

        Returns:
            What became of the job: its final state, ``released`` or ``lease lost``.
        """
        job_id = str(claim.job["id"])
        try:
            spec = SearchSpec.model_validate(claim.job["spec"])
        except ValidationError as exc:
            errors = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
            return self._finish(claim, "failed", error=f"invalid spec: {errors}")
        progress = JobProgress(spec.target_sparsity, spec.tolerance, spec.trial_budget())
        progress.resume(claim.job.get("progress"))
        process = JobProcess(
            job_id,
            spec.model_dump(mode="json"),
            self.storage,
            progress,
            address=self.ray_address,
            tracking=self.tracking,
        )
        process.start()
        logger.info("job %s: search process %s, storage %s", job_id, process.pid, process.storage)
        try:
            reason = self._supervise(claim, process, progress)
            outcome = process.outcome()
        finally:
            process.close()
        return self._report(claim, outcome, reason, progress)

    def _supervise(
        self, claim: Claim, process: JobProcess, progress: JobProgress
    ) -> StopReason | None:
        """Relay events and heartbeat until the search process ends; stop it when the job is
        cancelled, the lease is lost or the agent is asked to stop. Returns why it was stopped."""
        job_id = str(claim.job["id"])
        interval = max(claim.lease_seconds / 3, 0.2)
        news_interval = min(max(self.progress_seconds, 0.2), interval)
        last_beat = time.monotonic()
        sent = progress.revision
        reason: StopReason | None = None
        kill_at: float | None = None
        while True:
            process.pump(timeout=0.2)
            if not process.alive():
                return reason
            if self._stop_requested and reason is None:
                reason = "shutdown"
                logger.info("job %s: stopping the search to hand the job back", job_id)
                process.interrupt()
                kill_at = time.monotonic() + self.stop_grace_seconds
            since = time.monotonic() - last_beat
            news = progress.revision != sent
            if reason != "lease_lost" and (since >= interval or (news and since >= news_interval)):
                sent = progress.revision
                answer = self._heartbeat(claim, progress)
                last_beat = time.monotonic()
                if answer is None:
                    logger.warning("job %s: lease lost; killing its search", job_id)
                    reason = "lease_lost"
                    process.kill()  # the job may already run elsewhere: stop writing at once
                elif answer and answer.get("cancel") and reason is None:
                    reason = "cancel"
                    logger.info("job %s: cancel requested; stopping its search", job_id)
                    process.interrupt()
                    kill_at = time.monotonic() + self.stop_grace_seconds
            if kill_at is not None and (self._kill_requested or time.monotonic() >= kill_at):
                logger.warning("job %s: the search did not stop in time; killing it", job_id)
                process.kill()
                kill_at = None

    def _heartbeat(
        self, claim: Claim, progress: JobProgress | None
    ) -> dict[str, Any] | Literal[False] | None:
        """One heartbeat. Returns the answer, ``None`` when the lease is lost, ``False`` when
        the service could not be reached (the next heartbeat tries again)."""
        job_id = str(claim.job["id"])
        snapshot = None if progress is None else progress.snapshot()
        try:
            return self.client.heartbeat(job_id, claim.lease_id, snapshot)
        except ApiError as exc:
            if exc.status in LEASE_LOST:
                return None
            if exc.status in TOO_LARGE and snapshot is not None:
                logger.warning("job %s: progress refused (%s); heartbeat without it", job_id, exc)
                return self._heartbeat(claim, None)
            logger.warning("job %s: heartbeat failed: %s", job_id, exc)
        except httpx.HTTPError as exc:
            logger.warning("job %s: heartbeat failed: %s", job_id, exc)
        return False

    def _report(
        self, claim: Claim, outcome: Outcome, reason: StopReason | None, progress: JobProgress
    ) -> str:
        """Tell the service how the job ended (or hand it back)."""
        if reason == "lease_lost":
            return "lease lost"
        if reason == "cancel":
            return self._finish(claim, "cancelled")
        if outcome.kind == "result" and outcome.result is not None:
            progress.complete(outcome.result)
            self._heartbeat(claim, progress)  # the final progress; finish decides on the lease
            state = "succeeded" if outcome.result.get("reached") else "unreached"
            return self._finish(claim, state, result=outcome.result)
        if reason == "shutdown":
            return self._release(claim)
        error = outcome.error or outcome.kind
        if outcome.kind == "interrupted":
            error = "the search was interrupted"
        return self._finish(claim, "failed", error=error)

    def _finish(
        self,
        claim: Claim,
        state: str,
        *,
        result: Mapping[str, Any] | None = None,
        error: str | None = None,
    ) -> str:
        job_id = str(claim.job["id"])
        try:
            try:
                self.client.finish(job_id, claim.lease_id, state, result=result, error=error)
            except ApiError as exc:
                if exc.status not in TOO_LARGE or result is None:
                    raise
                logger.warning("job %s: result refused (%s); sending it compacted", job_id, exc)
                self.client.finish(
                    job_id, claim.lease_id, state, result=compact_result(result), error=error
                )
        except (ApiError, httpx.HTTPError) as exc:
            # the lease expires and the job is run again (a finished experiment resumes as done)
            logger.error("job %s: could not report %s: %s", job_id, state, exc)
            return f"{state} (not reported: {exc})"
        return state

    def _release(self, claim: Claim) -> str:
        job_id = str(claim.job["id"])
        try:
            self.client.release(job_id, claim.lease_id)
        except (ApiError, httpx.HTTPError) as exc:
            logger.error("job %s: could not release it: %s", job_id, exc)
            return f"not released: {exc}"
        return "released"
