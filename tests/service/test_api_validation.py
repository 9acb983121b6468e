"""Invalid input over real HTTP: every bad body is a 4xx whose errors name the field.

Table-driven: each row is a body (JSON, or raw bytes where JSON cannot express it) and the
``loc`` that must appear among the errors. Nothing here may ever answer 500.
"""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from tests.service.live_api import SPEC, LiveApi, new_user

pytest_plugins = ["tests.service.api_fixtures"]

API_ENV = {"STRSEARCH_MAX_TRIALS": "20", "STRSEARCH_MAX_BODY_BYTES": "16384"}
LIMIT = 16384
JOB_ID = "0123456789abcdef0123456789abcdef"


def spec(**changes: Any) -> dict[str, Any]:
    return {**SPEC, **changes}


def nested(depth: int) -> dict[str, Any]:
    value: dict[str, Any] = {"leaf": 1}
    for _ in range(depth):
        value = {"child": value}
    return value


# (id, body, expected loc); a str or bytes body is sent as-is with Content-Type: application/json
SPEC_CASES: list[tuple[str, Any, list[Any]]] = [
    ("empty object: model", {}, ["body", "model"]),
    ("empty object: dataset", {}, ["body", "dataset"]),
    ("empty object: target", {}, ["body", "target_sparsity"]),
    ("unknown model", spec(model="no_such_model"), ["body", "model"]),
    ("unknown dataset", spec(dataset="no_such_data"), ["body", "dataset"]),
    ("model cannot take the inputs", spec(model="mnist1d_cnn"), ["body", "model"]),
    ("disk dataset without data_root", spec(dataset="cifar10"), ["body", "data_root"]),
    ("model name with a path", spec(model="../etc/passwd"), ["body", "model"]),
    ("model not a string", spec(model=5), ["body", "model"]),
    ("model null", spec(model=None), ["body", "model"]),
    ("target 0", spec(target_sparsity=0), ["body", "target_sparsity"]),
    ("target 1", spec(target_sparsity=1), ["body", "target_sparsity"]),
    ("target above 1", spec(target_sparsity=1.5), ["body", "target_sparsity"]),
    ("target negative", spec(target_sparsity=-0.1), ["body", "target_sparsity"]),
    ("target a word", spec(target_sparsity="high"), ["body", "target_sparsity"]),
    (
        "target NaN",
        b'{"model":"digits_cnn","dataset":"digits","target_sparsity":NaN}',
        ["body", "target_sparsity"],
    ),
    ("tolerance too wide", spec(tolerance=0.2), ["body", "tolerance"]),
    ("band outside (0, 1)", spec(target_sparsity=0.998), ["body", "tolerance"]),
    ("val_fraction 1", spec(val_fraction=1), ["body", "val_fraction"]),
    ("version 2", spec(version=2), ["body", "version"]),
    ("unknown method", spec(method="gmp"), ["body", "method"]),
    ("unknown field", spec(colour="red"), ["body", "colour"]),
    ("unknown nested field", spec(search={"colour": "red"}), ["body", "search", "colour"]),
    (
        "inverted lambda bracket",
        spec(search={"lambda_min": 0.1, "lambda_max": 0.01}),
        ["body", "search", "lambda_min"],
    ),
    ("lambda_min 0", spec(search={"lambda_min": 0}), ["body", "search", "lambda_min"]),
    ("no s_init", spec(search={"s_init": []}), ["body", "search", "s_init"]),
    ("repeated s_init", spec(search={"s_init": [-5, -5]}), ["body", "search", "s_init"]),
    (
        "s_init infinity",
        b'{"model":"digits_cnn","dataset":"digits","target_sparsity":0.9,'
        b'"search":{"s_init":[-Infinity]}}',
        ["body", "search", "s_init", 0],
    ),
    (
        "s_init NaN",
        b'{"model":"digits_cnn","dataset":"digits","target_sparsity":0.9,'
        b'"search":{"s_init":[NaN]}}',
        ["body", "search", "s_init", 0],
    ),
    (
        "s_init overflowing float",
        b'{"model":"digits_cnn","dataset":"digits",'
        b'"target_sparsity":0.9,"search":{"s_init":[1e999]}}',
        ["body", "search", "s_init", 0],
    ),
    ("max_trials 0", spec(search={"max_trials": 0}), ["body", "search", "max_trials"]),
    ("max_trials over quota", spec(search={"max_trials": 21}), ["body", "search", "max_trials"]),
    (
        "comparison over quota",
        spec(methods=["str", "gmp"], search={"max_trials": 16}, comparison={"seeds": [0, 1, 2]}),
        ["body", "search", "max_trials"],
    ),
    ("unknown method", spec(methods=["str", "magic"]), ["body", "methods", 1]),
    (
        "transfer without str",
        spec(methods=["str_to_gmp"]),
        ["body", "methods"],
    ),
    (
        "max_trials over the limit",
        spec(search={"max_trials": 501}),
        ["body", "search", "max_trials"],
    ),
    ("search not an object", spec(search="fast"), ["body", "search"]),
    ("training null", spec(training=None), ["body", "training"]),
    ("epochs 0", spec(training={"epochs": 0}), ["body", "training", "epochs"]),
    (
        "warmup over epochs",
        spec(training={"epochs": 2, "warmup_epochs": 3}),
        ["body", "training", "warmup_epochs"],
    ),
    (
        "unknown optimizer",
        spec(training={"optimizer": "rmsprop"}),
        ["body", "training", "optimizer"],
    ),
    (
        "batch not a multiple of workers",
        spec(training={"batch_size": 127}, resources={"workers_per_trial": 2}),
        ["body", "training", "batch_size"],
    ),
    (
        "GPU shared by parallel workers",
        spec(resources={"workers_per_trial": 2, "gpus_per_trial": 0.5}),
        ["body", "resources", "gpus_per_trial"],
    ),
    (
        "negative CPUs",
        spec(resources={"cpus_per_trial": -1}),
        ["body", "resources", "cpus_per_trial"],
    ),
    ("NUL in data_root", spec(data_root="/data/\u0000x"), ["body", "data_root"]),
    ("data_root too long", spec(data_root="/d" * 2100), ["body", "data_root"]),
    (
        "too many exclusions",
        spec(reparam={"exclude": ["x"] * 1001}),
        ["body", "reparam", "exclude"],
    ),
    (
        "NUL in an exclusion",
        spec(reparam={"exclude": ["fc\u0000"]}),
        ["body", "reparam", "exclude", 0],
    ),
    ("empty body", b"", ["body"]),
    ("not JSON", b"model=digits_cnn", ["body"]),
    ("truncated JSON", b'{"model": "digits_cnn",', ["body"]),
    ("JSON array", [SPEC], ["body"]),
    ("JSON string", "digits_cnn", ["body"]),
    ("JSON null", b"null", ["body"]),
    ("not UTF-8", b'{"model": "\xff\xfe"}', ["body"]),
    ("nested too deep to parse", b"[" * 5000 + b"]" * 5000, ["body"]),
    ("integer too long to parse", b'{"target_sparsity": ' + b"9" * 5000 + b"}", ["body"]),
]


def _send(client: httpx.Client, path: str, body: Any, **headers: str) -> httpx.Response:
    if isinstance(body, bytes):
        return client.post(
            path, content=body, headers={"Content-Type": "application/json", **headers}
        )
    return client.post(path, json=body, headers=headers)


def assert_names(response: httpx.Response, loc: list[Any]) -> None:
    assert response.status_code == 422, response.text
    errors = response.json()["detail"]
    assert isinstance(errors, list)
    assert errors
    for error in errors:
        assert set(error) == {"type", "loc", "msg"}, error
        assert error["loc"][0] in ("body", "header", "query", "path")
        assert error["msg"]
    assert loc in [error["loc"] for error in errors], errors


@pytest.fixture
def user_token(api: LiveApi) -> str:
    return new_user(api)


@pytest.fixture
def submitter(clients: Callable[[str | None], httpx.Client], user_token: str) -> httpx.Client:
    return clients(user_token)


@pytest.mark.parametrize(
    ("body", "loc"), [c[1:] for c in SPEC_CASES], ids=[c[0] for c in SPEC_CASES]
)
def test_invalid_spec_is_422_naming_the_field(
    submitter: httpx.Client, body: Any, loc: list[Any]
) -> None:
    assert_names(_send(submitter, "/jobs", body), loc)
    assert submitter.get("/jobs").json()["total"] == 0  # nothing was stored


def test_messages_say_what_is_wrong(submitter: httpx.Client) -> None:
    def messages(body: dict[str, Any]) -> str:
        response = submitter.post("/jobs", json=body)
        assert response.status_code == 422
        return " ".join(error["msg"] for error in response.json()["detail"])

    assert "digits_cnn" in messages(spec(model="nope"))  # the valid names are listed
    assert "lambda_min" in messages(spec(search={"lambda_min": 0.1, "lambda_max": 0.01}))
    assert "target_sparsity" in messages(spec(target_sparsity=0.998))
    assert "quota" in messages(spec(search={"max_trials": 21}))
    # 16 + 2 trials for str, 3 for gmp: the message says why a comparison counts 21
    assert "can run 21 trials" in messages(
        spec(methods=["str", "gmp"], search={"max_trials": 16}, comparison={"seeds": [0, 1, 2]})
    )
    assert "JSON" in " ".join(e["msg"] for e in _send(submitter, "/jobs", b"{").json()["detail"])


def test_body_without_json_content_type_is_422(submitter: httpx.Client) -> None:
    response = submitter.post(
        "/jobs", content=b'{"model": "digits_cnn"}', headers={"Content-Type": "text/plain"}
    )
    assert_names(response, ["body"])


def test_all_problems_of_a_body_are_reported_at_once(submitter: httpx.Client) -> None:
    body = spec(target_sparsity=2, tolerance=0.5, colour="red", search={"max_trials": 0})
    response = submitter.post("/jobs", json=body)
    assert response.status_code == 422
    locs = [error["loc"] for error in response.json()["detail"]]
    for loc in (
        ["body", "target_sparsity"],
        ["body", "tolerance"],
        ["body", "colour"],
        ["body", "search", "max_trials"],
    ):
        assert loc in locs


def test_names_and_quota_are_reported_together(submitter: httpx.Client) -> None:
    body = spec(model="nope", dataset="cifar10", search={"max_trials": 30})
    response = submitter.post("/jobs", json=body)
    locs = [error["loc"] for error in response.json()["detail"]]
    assert ["body", "model"] in locs
    assert ["body", "data_root"] in locs
    assert ["body", "search", "max_trials"] in locs


@pytest.mark.parametrize(
    ("key", "loc"),
    [("k" * 201, ["header", "idempotency-key"]), ("", ["header", "idempotency-key"])],
    ids=["too long", "empty"],
)
def test_bad_idempotency_key_is_422_naming_the_header(
    submitter: httpx.Client, key: str, loc: list[Any]
) -> None:
    assert_names(submitter.post("/jobs", json=SPEC, headers={"Idempotency-Key": key}), loc)


# --- agent bodies ---------------------------------------------------------------------------

AGENT_CASES: list[tuple[str, str, Any, list[Any]]] = [
    ("claim: no agent", "/agent/claim", {}, ["body", "agent"]),
    ("claim: empty agent", "/agent/claim", {"agent": ""}, ["body", "agent"]),
    ("claim: long agent", "/agent/claim", {"agent": "a" * 201}, ["body", "agent"]),
    ("claim: NUL in agent", "/agent/claim", {"agent": "a\u0000"}, ["body", "agent"]),
    ("claim: agent number", "/agent/claim", {"agent": 7}, ["body", "agent"]),
    ("claim: unknown field", "/agent/claim", {"agent": "a", "gpus": 1}, ["body", "gpus"]),
    ("claim: not JSON", "/agent/claim", b"agent=a", ["body"]),
    ("claim: array", "/agent/claim", ["a"], ["body"]),
    ("heartbeat: no lease", f"/agent/jobs/{JOB_ID}/heartbeat", {}, ["body", "lease_id"]),
    (
        "heartbeat: empty lease",
        f"/agent/jobs/{JOB_ID}/heartbeat",
        {"lease_id": ""},
        ["body", "lease_id"],
    ),
    (
        "heartbeat: NUL in lease",
        f"/agent/jobs/{JOB_ID}/heartbeat",
        {"lease_id": "a\u0000"},
        ["body", "lease_id"],
    ),
    (
        "heartbeat: progress a string",
        f"/agent/jobs/{JOB_ID}/heartbeat",
        {"lease_id": "x", "progress": "half"},
        ["body", "progress"],
    ),
    (
        "heartbeat: progress a list",
        f"/agent/jobs/{JOB_ID}/heartbeat",
        {"lease_id": "x", "progress": [1]},
        ["body", "progress"],
    ),
    (
        "heartbeat: NaN in progress",
        f"/agent/jobs/{JOB_ID}/heartbeat",
        b'{"lease_id": "x", "progress": {"best": {"val_acc": NaN}}}',
        ["body", "progress"],
    ),
    (
        "heartbeat: NUL in progress",
        f"/agent/jobs/{JOB_ID}/heartbeat",
        {"lease_id": "x", "progress": {"note": "a\u0000"}},
        ["body", "progress"],
    ),
    (
        "heartbeat: NUL in a progress key",
        f"/agent/jobs/{JOB_ID}/heartbeat",
        {"lease_id": "x", "progress": {"a\u0000": 1}},
        ["body", "progress"],
    ),
    (
        "heartbeat: progress nested too deep",
        f"/agent/jobs/{JOB_ID}/heartbeat",
        {"lease_id": "x", "progress": nested(40)},
        ["body", "progress"],
    ),
    ("finish: no state", f"/agent/jobs/{JOB_ID}/finish", {"lease_id": "x"}, ["body", "state"]),
    (
        "finish: state running",
        f"/agent/jobs/{JOB_ID}/finish",
        {"lease_id": "x", "state": "running"},
        ["body", "state"],
    ),
    (
        "finish: state queued",
        f"/agent/jobs/{JOB_ID}/finish",
        {"lease_id": "x", "state": "queued"},
        ["body", "state"],
    ),
    (
        "finish: error a number",
        f"/agent/jobs/{JOB_ID}/finish",
        {"lease_id": "x", "state": "failed", "error": 5},
        ["body", "error"],
    ),
    (
        "finish: NUL in error",
        f"/agent/jobs/{JOB_ID}/finish",
        {"lease_id": "x", "state": "failed", "error": "boom\u0000"},
        ["body", "error"],
    ),
    (
        "finish: result a list",
        f"/agent/jobs/{JOB_ID}/finish",
        {"lease_id": "x", "state": "succeeded", "result": []},
        ["body", "result"],
    ),
    (
        "finish: infinity in result",
        f"/agent/jobs/{JOB_ID}/finish",
        b'{"lease_id": "x", "state": "succeeded", "result": {"flops": Infinity}}',
        ["body", "result"],
    ),
    ("release: no lease", f"/agent/jobs/{JOB_ID}/release", {}, ["body", "lease_id"]),
    (
        "release: unknown field",
        f"/agent/jobs/{JOB_ID}/release",
        {"lease_id": "x", "why": "bored"},
        ["body", "why"],
    ),
    ("release: empty body", f"/agent/jobs/{JOB_ID}/release", b"", ["body"]),
]


@pytest.mark.parametrize(
    ("path", "body", "loc"), [c[1:] for c in AGENT_CASES], ids=[c[0] for c in AGENT_CASES]
)
def test_invalid_agent_body_is_422_naming_the_field(
    worker_http: httpx.Client, path: str, body: Any, loc: list[Any]
) -> None:
    assert_names(_send(worker_http, path, body), loc)


def test_malformed_job_id_is_404(worker_http: httpx.Client, submitter: httpx.Client) -> None:
    for job_id in ("a%00b", "x" * 65, "%C3%A9t%C3%A9"):
        assert submitter.get(f"/jobs/{job_id}").status_code == 404
        response = worker_http.post(f"/agent/jobs/{job_id}/heartbeat", json={"lease_id": "x"})
        assert response.status_code == 404, response.text


# --- size limit -----------------------------------------------------------------------------


def padded(size: int) -> bytes:
    """A valid spec as JSON, padded with whitespace to exactly ``size`` bytes."""
    body = httpx.Request("POST", "/", json=SPEC).content
    return body[:-1] + b" " * (size - len(body)) + b"}"


def test_body_at_the_limit_is_accepted(submitter: httpx.Client) -> None:
    body = padded(LIMIT)
    assert len(body) == LIMIT
    response = submitter.post("/jobs", content=body, headers={"Content-Type": "application/json"})
    assert response.status_code == 201, response.text


@pytest.mark.parametrize("path", ["/jobs", "/agent/claim", f"/agent/jobs/{JOB_ID}/finish"])
def test_body_over_the_limit_is_413(
    clients: Callable[[str | None], httpx.Client],
    user_token: str,
    api: LiveApi,
    path: str,
) -> None:
    token = user_token if path == "/jobs" else api.worker_token
    client = clients(token)
    body = padded(LIMIT + 1)
    response = client.post(path, content=body, headers={"Content-Type": "application/json"})
    assert response.status_code == 413
    assert str(LIMIT) in response.json()["detail"]


def test_streamed_body_over_the_limit_is_413(
    clients: Callable[[str | None], httpx.Client], user_token: str
) -> None:
    """A chunked body (no Content-Length) is cut off once it passes the limit."""
    body = padded(LIMIT + 4096)

    def chunks() -> Iterator[bytes]:
        for start in range(0, len(body), 1024):
            yield body[start : start + 1024]

    client = clients(user_token)
    response = client.post("/jobs", content=chunks(), headers={"Content-Type": "application/json"})
    assert response.status_code == 413
    assert response.json()["detail"]
    assert client.get("/jobs").json()["total"] == 0


def test_lying_content_length_cannot_sneak_a_body_past_the_limit(
    api: LiveApi, user_token: str
) -> None:
    """A Content-Length under the limit with more bytes after it: never a stored job or a 500."""

    host, port = "127.0.0.1", api.port
    body = padded(LIMIT + 100)
    request = (
        b"POST /jobs HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Authorization: Bearer " + user_token.encode() + b"\r\n"
        b"Content-Length: 10\r\nConnection: close\r\n\r\n" + body
    )
    with socket.create_connection((host, port), timeout=30) as sock:
        sock.sendall(request)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    status = int(answer.split(b" ", 2)[1])
    assert 400 <= status < 500, answer[:200]
