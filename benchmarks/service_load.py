"""Service load: job submissions per second and latency of ``POST /jobs`` under concurrency.

For each database backend (SQLite file, PostgreSQL on 127.0.0.1:5432) the benchmark starts the
real API (``python -m service``, one uvicorn process) on a fresh database, makes a user token, and
for each concurrency level submits ``--jobs`` jobs from that many concurrent clients (asyncio +
httpx on one connection pool, ``Idempotency-Key`` per job). Every tenth job is submitted a second
time with the same key, as a client retry would, and must come back as the same job.

After each level it reads every job back through ``GET /jobs`` and counts:

- **lost**: a submission answered 201 whose job is not in the listing;
- **duplicated**: more jobs in the listing than distinct keys submitted, or a retry that
  returned another job.

Both must be 0. Reported per backend and level: jobs, wall seconds, submissions per second
(first submissions only), p50 / p99 latency of a submission in milliseconds.

The load generator runs on the same machine as the API (and PostgreSQL), so on a 2-core box the
three compete for the CPU: the numbers are what one API process sustains here, not a ceiling.

Usage::

    python -m benchmarks.service_load                         # both backends, 1/16/64, 400 jobs
    python -m benchmarks.service_load --backends sqlite --concurrency 1 16 --jobs 100
    python -m benchmarks.service_load --json runs/service_load.json
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import httpx

from service.db import make_engine, scratch_databases
from service.process import launch
from service.states import Role
from service.users import Users, new_token

POSTGRES_ADMIN = os.environ.get(
    "STRSEARCH_BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)
SPEC: dict[str, Any] = {"model": "digits_cnn", "dataset": "digits", "target_sparsity": 0.9}
RETRY_EVERY = 10


@dataclass(frozen=True)
class LevelResult:
    """One backend at one concurrency level."""

    backend: str
    concurrency: int
    jobs: int
    wall_s: float
    per_s: float
    p50_ms: float
    p99_ms: float
    lost: int
    duplicated: int


@contextlib.contextmanager
def database(backend: str, folder: Path) -> Iterator[str]:
    """A fresh, empty database URL on ``backend``; a PostgreSQL one is dropped afterwards."""
    if backend == "sqlite":
        yield f"sqlite:///{folder / 'service.db'}"
        return
    with scratch_databases(POSTGRES_ADMIN, [f"strsearch_bench_{uuid.uuid4().hex[:12]}"]) as urls:
        yield urls[0]


@contextlib.contextmanager
def api(database_url: str, folder: Path) -> Iterator[str]:
    """Run ``python -m service`` on ``database_url``; yield its URL; stop it with SIGTERM."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("STRSEARCH_")}
    env |= {"STRSEARCH_DATABASE_URL": database_url, "STRSEARCH_BOOTSTRAP_TOKEN": new_token()}
    process, url = launch(env, folder / "api.log")
    try:
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def user_token(database_url: str, name: str) -> str:
    """A new token of user ``name`` with a quota the benchmark never reaches."""
    engine = make_engine(database_url)
    try:
        users = Users(engine)
        users.ensure_user(name, Role.USER)
        return users.create_token(name, Role.USER, label="service_load")
    finally:
        engine.dispose()


async def _submit(http: httpx.AsyncClient, key: str) -> tuple[str, float]:
    started = time.perf_counter()
    response = await http.post("/jobs", json=SPEC, headers={"Idempotency-Key": key})
    elapsed = time.perf_counter() - started
    if response.status_code not in (200, 201):
        raise RuntimeError(f"POST /jobs answered {response.status_code}: {response.text}")
    return str(response.json()["id"]), elapsed


async def _load(url: str, token: str, jobs: int, concurrency: int) -> dict[str, Any]:
    keys = [uuid.uuid4().hex for _ in range(jobs)]
    ids: dict[str, str] = {}
    latencies: list[float] = []
    mismatched = 0
    next_index = 0
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    headers = {"Authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(
        base_url=url, headers=headers, limits=limits, timeout=120, trust_env=False
    ) as http:

        async def client() -> None:
            nonlocal next_index, mismatched
            while next_index < jobs:
                index = next_index
                next_index += 1
                job_id, elapsed = await _submit(http, keys[index])
                ids[keys[index]] = job_id
                latencies.append(elapsed)
                if index % RETRY_EVERY == 0:
                    again, _ = await _submit(http, keys[index])
                    mismatched += again != job_id

        started = time.perf_counter()
        await asyncio.gather(*(client() for _ in range(concurrency)))
        wall = time.perf_counter() - started
        listed = await _listed(http)
    return {"ids": ids, "latencies": latencies, "wall": wall, "listed": listed, "bad": mismatched}


async def _listed(http: httpx.AsyncClient) -> list[str]:
    """Every job id the user can see (all pages)."""
    found: list[str] = []
    while True:
        page = (await http.get("/jobs", params={"limit": 200, "offset": len(found)})).json()
        found += [item["id"] for item in page["items"]]
        if len(found) >= page["total"] or not page["items"]:
            return found


def run_level(url: str, token: str, backend: str, concurrency: int, jobs: int) -> LevelResult:
    """Submit ``jobs`` jobs at ``concurrency`` as a fresh user; check nothing lost or doubled."""
    outcome = asyncio.run(_load(url, token, jobs, concurrency))
    submitted = set(outcome["ids"].values())
    listed = outcome["listed"]
    latencies = sorted(outcome["latencies"])
    return LevelResult(
        backend=backend,
        concurrency=concurrency,
        jobs=jobs,
        wall_s=outcome["wall"],
        per_s=jobs / outcome["wall"],
        p50_ms=1000 * statistics.median(latencies),
        p99_ms=1000 * latencies[min(len(latencies) - 1, round(0.99 * (len(latencies) - 1)))],
        lost=len(submitted - set(listed)),
        duplicated=max(0, len(listed) - len(submitted)) + outcome["bad"],
    )


def run(backends: Sequence[str], levels: Sequence[int], jobs: int) -> list[LevelResult]:
    """Every backend at every level, each level as its own user on one API process."""
    results = []
    for backend in backends:
        with tempfile.TemporaryDirectory(prefix="strsearch-load-") as tmp:
            folder = Path(tmp)
            with database(backend, folder) as url, api(url, folder) as base:
                for level in levels:
                    token = user_token(url, f"load-{level}")
                    results.append(run_level(base, token, backend, level, jobs))
                    print(_row(results[-1]), flush=True)
    return results


HEADER = (
    "| backend | concurrency | jobs | wall s | jobs/s | p50 ms | p99 ms | lost | duplicated |\n"
    "|---|---|---|---|---|---|---|---|---|"
)


def _row(r: LevelResult) -> str:
    return (
        f"| {r.backend} | {r.concurrency} | {r.jobs} | {r.wall_s:.2f} | {r.per_s:.0f} | "
        f"{r.p50_ms:.1f} | {r.p99_ms:.1f} | {r.lost} | {r.duplicated} |"
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backends", nargs="+", default=["sqlite", "postgresql"])
    parser.add_argument("--concurrency", nargs="+", type=int, default=[1, 16, 64])
    parser.add_argument("--jobs", type=int, default=400, help="first submissions per level")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args(argv)
    for backend in args.backends:
        if backend not in ("sqlite", "postgresql"):
            parser.error(f"unknown backend {backend!r}")
    print(HEADER, flush=True)
    results = run(args.backends, args.concurrency, args.jobs)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps([asdict(r) for r in results], indent=2))
    return 1 if any(r.lost or r.duplicated for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
