"""``strsearch agent``: run the service's queued jobs on Ray (docs/api.md, "Agent routes")."""

from __future__ import annotations

import logging
import sys
from typing import Annotated

import typer

from strsearch.client import DEFAULT_SERVER


def agent(
    server: Annotated[
        str, typer.Option(envvar="STRSEARCH_SERVER", help="The service's base URL.")
    ] = DEFAULT_SERVER,
    token: Annotated[
        str | None,
        typer.Option(envvar="STRSEARCH_TOKEN", help="A worker token.", show_default=False),
    ] = None,
    storage: Annotated[
        str,
        typer.Option(
            help="Experiment storage, one folder per job; agents that take over each other's "
            "jobs must share it (a shared folder or a scheme:// URI on clusters)."
        ),
    ] = "runs/agent",
    name: Annotated[
        str | None, typer.Option(help="This agent's name in the job records (default host-pid).")
    ] = None,
    address: Annotated[
        str | None,
        typer.Option(envvar="RAY_ADDRESS", help="Ray cluster to join (default: a local Ray)."),
    ] = None,
    poll: Annotated[float, typer.Option(help="Seconds between claims while idle.")] = 5.0,
    progress_seconds: Annotated[
        float,
        typer.Option(
            min=0.2, help="Least seconds between two progress updates sent while trials report."
        ),
    ] = 2.0,
    once: Annotated[
        bool, typer.Option("--once", help="Run at most one job, then exit (also when idle).")
    ] = False,
) -> None:
    """Claim jobs from the service and run their searches until stopped.

    SIGTERM or Ctrl+C hand the running job back to the queue, where the next agent resumes it.
    """
    import httpx

    from strsearch.client import ApiError, Client
    from workers.agent import Agent

    if not token:
        typer.echo("error: a worker token is needed (--token or STRSEARCH_TOKEN)", err=True)
        raise typer.Exit(code=2)
    # force: replace whatever handler an imported library may have set up
    logging.basicConfig(
        level=logging.INFO,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        force=True,
    )
    logging.getLogger("httpx").setLevel(logging.WARNING)  # not a line per heartbeat
    with Client(server, token) as client:
        worker = Agent(
            client,
            name=name,
            storage=storage,
            poll_seconds=poll,
            ray_address=address or None,
            progress_seconds=progress_seconds,
        )
        worker.install_signal_handlers()
        try:
            if once:
                worker.run_once()
            else:
                worker.run_forever()
        except ApiError as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(code=2) from exc
        except httpx.HTTPError as exc:
            typer.echo(f"error: cannot reach {server}: {exc}", err=True)
            raise typer.Exit(code=1) from exc
