"""Client commands of the service: ``submit``, ``jobs``, ``watch``, ``cancel``, ``result``.

They talk to the REST API (docs/api.md) through :class:`strsearch.client.Client` and import
neither torch nor Ray, so they start fast and run on any machine that can reach the service.
``submit`` takes the same spec options as ``strsearch search`` (:mod:`strsearch.cli.spec_options`)
and leaves validation to the service, whose answer names the wrong fields.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from strsearch.cli.connection import (
    DEFAULT_SERVER,
    DEFAULT_TOKEN_FILE,
    ServerOption,
    TokenFileOption,
    TokenOption,
    api_errors,
    open_client,
)
from strsearch.cli.job_display import FINAL_STATES, STATE_STYLE, follow
from strsearch.cli.render import make_console
from strsearch.cli.result_view import print_result
from strsearch.cli.spec_options import spec_options

JobId = Annotated[str, typer.Argument(help="The job's id (see `strsearch jobs`).")]
JsonOption = Annotated[bool, typer.Option("--json", help="Print the job as JSON.")]
#: how long ``watch`` keeps retrying while the API cannot be reached (a restart)
WATCH_RETRY_SECONDS = 60.0
#: exit status of ``watch`` (and ``submit --watch``) per final state
EXIT_STATUS = {"succeeded": 0, "unreached": 0, "failed": 1, "cancelled": 1}


def _dump(data: Any) -> None:
    print(json.dumps(data, indent=2))


@spec_options
def submit(
    spec: dict[str, Any],
    watch_job: Annotated[
        bool, typer.Option("--watch", help="Follow the job until it finishes (see `watch`).")
    ] = False,
    json_output: JsonOption = False,
    server: ServerOption = DEFAULT_SERVER,
    token: TokenOption = None,
    token_file: TokenFileOption = DEFAULT_TOKEN_FILE,
) -> None:
    """Submit a search job to the service; prints its id (with --json, the job)."""
    with api_errors(server), open_client(server, token, token_file) as client:
        job = client.submit(spec)
    if not watch_job:
        if json_output:
            _dump(job)
        else:
            print(job["id"])
        return
    make_console(stderr=True).print(f"submitted job {job['id']}", highlight=False)
    _follow(server, token, token_file, job, json_output=json_output, interval=1.0)


def jobs(
    state: Annotated[
        list[str] | None,
        typer.Option(help="Only jobs in this state (repeatable): queued, running, succeeded, …"),
    ] = None,
    limit: Annotated[int, typer.Option(help="How many jobs, newest first.")] = 20,
    json_output: Annotated[bool, typer.Option("--json", help="Print the page as JSON.")] = False,
    server: ServerOption = DEFAULT_SERVER,
    token: TokenOption = None,
    token_file: TokenFileOption = DEFAULT_TOKEN_FILE,
) -> None:
    """List jobs, newest first (yours; an admin sees everyone's)."""
    with api_errors(server), open_client(server, token, token_file) as client:
        page = client.jobs(state or None, limit=limit)
    if json_output:
        _dump(page)
        return
    console = make_console()
    console.print(jobs_table(page["items"]))
    shown, total = len(page["items"]), page["total"]
    if shown < total:
        console.print(f"{shown} of {total} jobs (--limit to see more)", highlight=False)


def jobs_table(items: list[Mapping[str, Any]]) -> Table:
    """One row per job: id, state, owner, what it searches, trials, best so far, created."""
    table = Table(header_style="bold")
    table.add_column("id", no_wrap=True, min_width=32)  # whole: the other commands take it
    for column in ("state", "owner", "model / dataset", "target", "trials", "best", "created"):
        table.add_column(column, justify="right" if column in ("target", "trials") else "left")
    for job in items:
        spec = job.get("spec") or {}
        progress = job.get("progress") or {}
        outcome = job.get("result") or {}
        best = outcome.get("best") or progress.get("best") or {}
        done = progress.get("trials_done")
        total = progress.get("trials_total") or (spec.get("search") or {}).get("max_trials")
        trials = f"{done or 0}/{total}" if progress or total else ""
        best_text = ""
        if isinstance(best.get("sparsity"), int | float):
            best_text = f"{best['sparsity']:.2%}"
            if isinstance(best.get("val_acc"), int | float):
                best_text += f" @ {best['val_acc']:.2%}"
        state = str(job.get("state", ""))
        target = spec.get("target_sparsity")
        table.add_row(
            str(job.get("id", "")),
            f"[{STATE_STYLE.get(state, '')}]{state}[/]",
            str(job.get("owner", "")),
            f"{spec.get('model')}/{spec.get('dataset')}",
            f"{target:.2%}" if isinstance(target, int | float) else "",
            trials,
            best_text,
            _when(job.get("created_at")),
        )
    return table


def _when(value: Any) -> str:
    """An ISO time as local ``YYYY-MM-DD HH:MM``."""
    if not isinstance(value, str):
        return ""
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return value
    return moment.astimezone().strftime("%Y-%m-%d %H:%M")


def watch(
    job_id: JobId,
    interval: Annotated[float, typer.Option(help="Seconds between polls.", min=0.1)] = 1.0,
    json_output: Annotated[
        bool, typer.Option("--json", help="Print the final job as JSON (the view goes to stderr).")
    ] = False,
    server: ServerOption = DEFAULT_SERVER,
    token: TokenOption = None,
    token_file: TokenFileOption = DEFAULT_TOKEN_FILE,
) -> None:
    """Follow a job until it finishes: progress bar and live trials table.

    Exits 0 when the job succeeded or spent its budget (unreached), 1 when it failed or was
    cancelled. Ctrl-C stops watching; the job goes on.
    """
    with api_errors(server), open_client(server, token, token_file) as client:
        job = client.job(job_id)
    _follow(server, token, token_file, job, json_output=json_output, interval=interval)


def _follow(
    server: str,
    token: str | None,
    token_file: Path,
    job: dict[str, Any],
    *,
    json_output: bool,
    interval: float,
) -> None:
    """Poll ``job`` every ``interval`` seconds until a final state, then print the outcome."""
    console = make_console(stderr=json_output)
    try:
        with (
            api_errors(server),
            open_client(server, token, token_file, retry_seconds=WATCH_RETRY_SECONDS) as client,
        ):
            job = follow(client, job, console, interval)
    except KeyboardInterrupt:
        console.print(
            f"stopped watching; job {job['id']} goes on (`strsearch watch {job['id']}`)",
            highlight=False,
        )
        raise typer.Exit(code=130) from None
    print_outcome(console, job)
    if json_output:
        _dump(job)
    raise typer.Exit(code=EXIT_STATUS.get(job["state"], 1))


def print_outcome(console: Console, job: Mapping[str, Any]) -> None:
    """The result of a succeeded/unreached job, or why it failed / that it was cancelled."""
    state = job["state"]
    if job.get("result"):
        print_result(console, job["result"])
    elif state == "failed":
        console.print(f"[bold red]job failed[/]: {job.get('error') or 'no reason given'}")
    elif state == "cancelled":
        console.print(f"[bold magenta]job cancelled[/] ({job.get('error') or 'on request'})")
    run_url = (job.get("progress") or {}).get("mlflow_run_url")
    if run_url and not (job.get("result") or {}).get("mlflow_run_url"):
        console.print(f"MLflow run: {run_url}", highlight=False)


def cancel(
    job_id: JobId,
    json_output: JsonOption = False,
    server: ServerOption = DEFAULT_SERVER,
    token: TokenOption = None,
    token_file: TokenFileOption = DEFAULT_TOKEN_FILE,
) -> None:
    """Cancel a job: a queued one at once; a running one is stopped by its agent."""
    with api_errors(server), open_client(server, token, token_file) as client:
        job = client.cancel(job_id)
    if json_output:
        _dump(job)
    elif job["state"] == "cancelled":
        print(f"job {job_id} cancelled")
    else:
        print(f"job {job_id}: cancel requested; its agent stops it (`strsearch watch {job_id}`)")


def result(
    job_id: JobId,
    json_output: Annotated[
        bool, typer.Option("--json", help="Print the job's result as JSON.")
    ] = False,
    server: ServerOption = DEFAULT_SERVER,
    token: TokenOption = None,
    token_file: TokenFileOption = DEFAULT_TOKEN_FILE,
) -> None:
    """The outcome of a finished job: best trial, its per-layer budget, MLflow links.

    Exits 1 when the job has no result (still queued or running, failed, or cancelled).
    """
    with api_errors(server), open_client(server, token, token_file) as client:
        job = client.job(job_id)
    outcome = job.get("result")
    if json_output and outcome is not None:
        _dump(outcome)
        return
    console = make_console(stderr=json_output)
    if outcome is None:
        if job["state"] in FINAL_STATES:
            print_outcome(console, job)
        else:
            console.print(
                f"job {job_id} is {job['state']}: no result yet (`strsearch watch {job_id}`)",
                highlight=False,
            )
        raise typer.Exit(code=1)
    print_outcome(console, job)
