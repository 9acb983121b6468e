"""``strsearch serve`` and ``strsearch demo``: the whole service on one machine, in one command.

``serve`` starts the embedded stack (:mod:`strsearch.cli.stack`: API, MLflow, Ray head, agent),
prints where everything is and runs until Ctrl-C or SIGTERM, then stops it in order. ``demo``
starts the same stack, submits a small digits job, follows it to the end, prints the result and
where to browse it, and stops the stack again, leaving the MLflow server up (as ``strsearch
search`` does) so the recorded run stays browsable.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from strsearch.cli.connection import DEFAULT_SERVER, DEFAULT_TOKEN_FILE
from strsearch.cli.render import make_console
from strsearch.cli.stack import Stack

#: the job ``strsearch demo`` submits (a 90 %-sparse CNN on the built-in digits data)
DEMO_SPEC: dict[str, Any] = {
    "model": "digits_cnn",
    "dataset": "digits",
    "target_sparsity": 0.9,
    "training": {"epochs": 10},
}

RootOption = Annotated[
    Path,
    typer.Option(help="Folder of everything the stack keeps (database, tokens, MLflow, logs)."),
]
PortOption = Annotated[int, typer.Option(help="Port of the API.", min=1, max=65535)]
CpusOption = Annotated[
    int | None,
    typer.Option(help="CPUs the local Ray head offers the searches (default: all).", min=1),
]


def _fail(message: str) -> typer.Exit:
    Console(stderr=True).print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    return typer.Exit(code=1)


def _print_places(console: Console, stack: Stack) -> None:
    """Where the API, its docs, MLflow, Ray, the token and the logs are."""
    rows = [
        ("API", stack.api_url),
        ("docs", f"{stack.api_url}/docs"),
        ("MLflow", stack.mlflow_url),
    ]
    if stack.ray_address:
        rows.append(
            ("Ray", f"{stack.ray_address} (RAY_AUTH_MODE=token, token in "
                    f"{stack.root / 'ray' / 'auth_token'})")
        )  # fmt: skip
    rows.append(("token", f"{stack.token_path} (admin; the client commands read it)"))
    logs = [stack.service_dir / "api.log"]
    if stack.agent:
        logs += [stack.root / "agent" / "agent.log", stack.root / "ray" / "ray.log"]
    rows.append(("logs", ", ".join(map(str, logs))))
    for name, place in rows:
        console.print(f"  [bold]{name:<7}[/] {place}", highlight=False, soft_wrap=True)


def _client_env_hint(stack: Stack) -> str:
    """The environment the client commands need when the stack is not at their defaults."""
    hints = []
    if stack.api_url != DEFAULT_SERVER:
        hints.append(f"STRSEARCH_SERVER={stack.api_url}")
    if stack.token_path != DEFAULT_TOKEN_FILE.resolve():
        hints.append(f"STRSEARCH_TOKEN_FILE={stack.token_path}")
    return " ".join(hints) + " " if hints else ""


def serve(
    port: PortOption = 8000,
    root: RootOption = Path("runs"),
    cpus: CpusOption = None,
    host: Annotated[
        str, typer.Option(help="Interface of the API (0.0.0.0: every interface).")
    ] = "127.0.0.1",
    agent: Annotated[
        bool,
        typer.Option(
            "--agent/--no-agent", help="Start a Ray head and an agent (off: agents run elsewhere)."
        ),
    ] = True,
) -> None:
    """Run the service on this machine: API (SQLite), MLflow, a Ray head and an agent.

    Ctrl-C or SIGTERM stops everything: the agent first (it hands its job back to the queue),
    then the API, the Ray head and the MLflow server it started.
    """
    from strsearch.cli.processes import StartError
    from strsearch.cli.stack import shielded, stop_signals

    console = make_console()
    stack = Stack(root, host=host, port=port, cpus=cpus, agent=agent, stop_mlflow=True)
    broken = None
    with stop_signals():
        try:
            console.print(f"starting the stack under {stack.root} …", highlight=False)
            stack.start()
            console.print("[bold green]strsearch service is up[/] (Ctrl-C stops it)")
            _print_places(console, stack)
            console.print(
                f"try: {_client_env_hint(stack)}strsearch submit --model digits_cnn "
                "--dataset digits --target 0.9 --watch",
                highlight=False,
                soft_wrap=True,
            )
            while not (broken := stack.exited()):
                time.sleep(1.0)
        except StartError as exc:
            raise _fail(str(exc)) from None
        except KeyboardInterrupt:
            console.print("stopping …")
        finally:
            with shielded():
                stack.stop()
    if broken:
        child = broken[0]
        raise _fail(
            f"{child.name} exited with status {child.process.returncode} (see {child.log}); "
            "the stack was stopped"
        )
    console.print("stopped")


def demo(
    port: PortOption = 8000,
    root: RootOption = Path("runs"),
    cpus: CpusOption = None,
    epochs: Annotated[int, typer.Option(help="Epochs per trial of the demo job.", min=1)] = 10,
) -> None:
    """Start the stack, run one job (a 90 %-sparse digits CNN) to the end, show the result.

    The API, agent and Ray head stop afterwards; the MLflow server stays up for browsing
    (`strsearch ui` prints its address, `strsearch ui --stop` stops it).
    """
    from strsearch.cli.job_display import follow
    from strsearch.cli.jobs import EXIT_STATUS, print_outcome
    from strsearch.cli.processes import StartError
    from strsearch.cli.stack import shielded, stop_signals
    from strsearch.client import ApiError, Client

    console = make_console()
    stack = Stack(root, port=port, cpus=cpus, agent=True, stop_mlflow=False)
    spec = DEMO_SPEC | {"training": {"epochs": epochs}}
    job: dict[str, Any] | None = None
    with stop_signals():
        try:
            console.print(f"starting the stack under {stack.root} …", highlight=False)
            stack.start()
            _print_places(console, stack)
            with Client(stack.api_url, stack.token) as client:
                job = client.submit(spec)
                console.print(f"submitted job {job['id']}: {json.dumps(spec)}", highlight=False)
                job = follow(client, job, console, interval=1.0)
        except StartError as exc:
            raise _fail(str(exc)) from None
        except ApiError as exc:
            raise _fail(str(exc)) from None
        except KeyboardInterrupt:
            console.print("interrupted: stopping (the job goes back to the queue) …")
        finally:
            with shielded():
                stack.stop()
    if job is None or job["state"] not in EXIT_STATUS:
        console.print(
            f"`strsearch serve --root {root}` resumes the job; then `strsearch jobs`.",
            highlight=False,
        )
        raise typer.Exit(code=130)
    print_outcome(console, job)
    console.print()
    console.print("browse it:", highlight=False)
    run_url = (job.get("result") or {}).get("mlflow_run_url") or (job.get("progress") or {}).get(
        "mlflow_run_url"
    )
    if run_url:
        console.print(f"  MLflow run  {run_url}", highlight=False, soft_wrap=True)
    kept = (
        ""
        if stack.mlflow_configured
        else (
            f" (still running: `strsearch ui --root {stack.root / 'mlflow'}` prints it, "
            "add --stop to stop it)"
        )
    )
    console.print(f"  MLflow UI   {stack.mlflow_url}{kept}", highlight=False, soft_wrap=True)
    console.print(
        f"  the job     `strsearch serve --root {root}`, then `strsearch result {job['id']}`",
        highlight=False,
        soft_wrap=True,
    )
    raise typer.Exit(code=EXIT_STATUS[job["state"]])
