"""docker-compose.yml, .env.example, .dockerignore and the Dockerfiles, checked without Docker.

Docker does not run where the tests run, so the deployment files are checked two ways: against
the published Compose Specification (the schema check-jsonschema vendors), and against the code
they start. Each command in the compose file goes through the real parser of the program it runs
(argparse of ``python -m service``, the ``strsearch`` Typer app, Ray's and MLflow's click
commands); every ``STRSEARCH_*`` variable must be one the code reads; and the wiring between the
services (names, ports, volumes, shared namespaces, tokens) must agree end to end. The compose
file is interpolated the way Compose does it, with the values of .env.example and random secrets.
"""

from __future__ import annotations

import copy
import dataclasses
import fnmatch
import functools
import ipaddress
import re
import secrets
import shlex
import subprocess
import sys
from collections.abc import Callable, Mapping
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import urlsplit

import click
import pytest
import typer
import yaml
from sqlalchemy.engine import URL, make_url
from typer.testing import CliRunner

from service.settings import PREFIX, Settings
from strsearch.cli.app import app

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yml"
ENV_EXAMPLE = ROOT / ".env.example"
DOCKERIGNORE = ROOT / ".dockerignore"
DOCKERFILE = ROOT / "deploy" / "Dockerfile"
DOCKERFILE_CUDA = ROOT / "deploy" / "Dockerfile.cuda"

SERVICES = {"postgres", "mlflow", "ray-head", "ray-worker", "ray-worker-gpu", "api", "agent"}
#: services that run a Ray node or a Ray driver
RAY_SERVICES = {"ray-head", "ray-worker", "ray-worker-gpu", "agent"}
RAY_WORKERS = ("ray-worker", "ray-worker-gpu")
SECRET_NAME = re.compile(r"TOKEN|PASSWORD|PASSWD|SECRET|API_KEY", re.IGNORECASE)
RESTART_POLICIES = {"always", "unless-stopped", "on-failure"}


@pytest.fixture(scope="module")
def mlflow_server() -> None:
    """Replaces the suite's session-wide MLflow server (tests/conftest.py, autouse) here: these
    checks read files and parse commands, they log nothing, and starting a server would take
    longer than all of them together."""


# --- Compose interpolation (${VAR}, ${VAR:-default}, ${VAR:?error}, $$, ...) ----------------------

_REFERENCE = re.compile(
    r"\$(?:(?P<escaped>\$)|\{(?P<braced>[^}]*)\}|(?P<named>[A-Za-z_][A-Za-z0-9_]*))"
)
_BRACED = re.compile(r"(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?+])(?P<arg>.*))?", re.DOTALL)


@dataclasses.dataclass(frozen=True)
class Reference:
    """One ``${...}`` in the compose file: the variable, its operator (``:-``, ``:?``, ...)."""

    name: str
    op: str
    arg: str


class MissingVariableError(LookupError):
    """A ``${VAR:?message}`` whose variable is unset or empty: Compose stops with the message."""


def _reference(match: re.Match[str]) -> Reference | None:
    if match["escaped"]:
        return None
    if match["named"]:
        return Reference(match["named"], "", "")
    braced = _BRACED.fullmatch(match["braced"])
    if braced is None:
        raise ValueError(f"not an interpolation Compose understands: ${{{match['braced']}}}")
    return Reference(braced["name"], braced["op"] or "", braced["arg"] or "")


def references(text: str) -> list[Reference]:
    """Every variable reference in ``text`` (``$$`` is a literal dollar, not a reference)."""
    found = (_reference(match) for match in _REFERENCE.finditer(text))
    return [ref for ref in found if ref is not None]


def interpolate(text: str, env: Mapping[str, str]) -> str:
    """Substitute the variables of ``text`` from ``env`` with Compose's rules."""

    def substitute(match: re.Match[str]) -> str:
        ref = _reference(match)
        if ref is None:
            return "$"
        value = env.get(ref.name)
        if ref.op in ("", "-", ":-"):
            if value is None or (ref.op == ":-" and value == ""):
                return ref.arg
            return value
        if ref.op in ("?", ":?"):
            if value is None or (ref.op == ":?" and value == ""):
                raise MissingVariableError(f"{ref.name}: {ref.arg}")
            return value
        present = value is not None and (ref.op == "+" or value != "")
        return ref.arg if present else ""

    return _REFERENCE.sub(substitute, text)


def interpolate_tree(node: Any, env: Mapping[str, str]) -> Any:
    """Interpolate every string value of a loaded YAML document (keys stay as written)."""
    if isinstance(node, str):
        return interpolate(node, env)
    if isinstance(node, dict):
        return {key: interpolate_tree(value, env) for key, value in node.items()}
    if isinstance(node, list):
        return [interpolate_tree(item, env) for item in node]
    return node


# --- the files ------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class EnvEntry:
    """A variable of .env.example with the comment lines of its paragraph above it."""

    name: str
    value: str
    comment: str


@functools.cache
def env_example() -> dict[str, EnvEntry]:
    """The variables of .env.example, in file order."""
    entries: dict[str, EnvEntry] = {}
    paragraph: list[str] = []
    for line in ENV_EXAMPLE.read_text().splitlines():
        stripped = line.strip()
        if not stripped:
            paragraph = []
            continue
        if stripped.startswith("#"):
            paragraph.append(stripped.lstrip("#").strip())
            continue
        name, sep, value = stripped.partition("=")
        assert sep and re.fullmatch(r"[A-Z_][A-Z0-9_]*", name), f".env.example: {line!r}"
        assert name not in entries, f".env.example sets {name} twice"
        entries[name] = EnvEntry(name, value, "\n".join(paragraph))
    return entries


@functools.cache
def deployment_env() -> dict[str, str]:
    """.env.example as a deployment fills it: its values, plus a fresh random value per secret."""
    env = {entry.name: entry.value for entry in env_example().values()}
    for name, value in env.items():
        if SECRET_NAME.search(name) and not value:
            env[name] = secrets.token_urlsafe(24)
    return env


@functools.cache
def raw_compose() -> dict[str, Any]:
    """docker-compose.yml as written (YAML anchors and merge keys resolved)."""
    document = yaml.safe_load(COMPOSE.read_text())
    assert isinstance(document, dict)
    return document


@functools.cache
def compose() -> dict[str, Any]:
    """docker-compose.yml interpolated with :func:`deployment_env`."""
    document = interpolate_tree(raw_compose(), deployment_env())
    assert isinstance(document, dict)
    return document


def service(name: str) -> dict[str, Any]:
    """One interpolated service definition."""
    definition = compose()["services"][name]
    assert isinstance(definition, dict)
    return definition


def argv(name: str) -> list[str]:
    """The command of a service as a list of arguments."""
    command = service(name)["command"]
    return shlex.split(command) if isinstance(command, str) else [str(arg) for arg in command]


def environment(name: str) -> dict[str, str]:
    """The environment of a service (mapping or ``KEY=value`` list form)."""
    env = service(name).get("environment", {})
    if isinstance(env, list):
        return dict(item.partition("=")[::2] for item in env)
    return {key: str(value) for key, value in env.items()}


def mounts(name: str) -> dict[str, str]:
    """Mount target -> source (a volume name or a host path) of a service."""
    result = {}
    for volume in service(name).get("volumes", []):
        if isinstance(volume, dict):
            result[volume["target"]] = volume["source"]
        else:
            source, target = volume.split(":")[:2]
            result[target] = source
    return result


@dataclasses.dataclass(frozen=True)
class Published:
    """One entry of ``ports``: host interface, host port(s), container port."""

    host_ip: str
    host_port: str
    target: int


def published(name: str) -> list[Published]:
    """The ports a service publishes on the host."""
    result = []
    for port in service(name).get("ports", []):
        if isinstance(port, dict):
            result.append(
                Published(
                    str(port.get("host_ip", "")), str(port.get("published", "")), port["target"]
                )
            )
            continue
        parts = str(port).split("/")[0].rsplit(":", 2)  # [[HOST_IP:]HOST_PORT:]TARGET
        host_ip = parts[0] if len(parts) == 3 else ""
        host_port = parts[-2] if len(parts) >= 2 else ""
        result.append(Published(host_ip, host_port, int(parts[-1])))
    return result


def option_value(args: list[str], option: str) -> str:
    """The value of ``--option value`` or ``--option=value`` in ``args``."""
    for index, arg in enumerate(args):
        if arg == option:
            return args[index + 1]
        if arg.startswith(option + "="):
            return arg.split("=", 1)[1]
    raise AssertionError(f"{option} not in {args}")


def healthcheck_ports(name: str) -> set[int]:
    """Ports of the http://127.0.0.1:PORT URLs a service's health check asks."""
    test = " ".join(service(name)["healthcheck"]["test"])
    return {int(port) for port in re.findall(r"http://127\.0\.0\.1:(\d+)/", test)}


def ray_start(args: list[str]) -> dict[str, Any]:
    """``ray start`` arguments parsed by Ray's own click command (unknown options raise)."""
    from ray.scripts.scripts import start

    assert args[:2] == ["ray", "start"], args
    return dict(start.make_context("ray start", args[2:]).params)


def strsearch_command(path: str) -> Any:
    """A command of the ``strsearch`` CLI as its click command (``"agent"``, ``"token create"``).

    Typer ships its own copy of click, so the objects are duck-typed here, not click's classes.
    """
    command = typer.main.get_command(app)
    for part in path.split():
        command = command.commands[part]
    return command


def byte_size(text: str) -> int:
    """A Docker size (``2gb``, ``512m``, ``1000000``) in bytes."""
    match = re.fullmatch(r"(\d+)\s*([kmg]?)b?", text.strip().lower())
    assert match, f"not a size: {text!r}"
    return int(match[1]) * 1024 ** " kmg".index(match[2] or " ")


# --- the schema -----------------------------------------------------------------------------------


def _validate(*paths: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "check_jsonschema", "--builtin-schema", "vendor.compose-spec"]
        + [str(path) for path in paths],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_the_compose_file_follows_the_compose_specification(tmp_path: Path) -> None:
    interpolated = tmp_path / "interpolated.yml"
    interpolated.write_text(yaml.safe_dump(compose(), sort_keys=False))
    done = _validate(COMPOSE, interpolated)
    assert done.returncode == 0, done.stdout + done.stderr


def _unknown_service_key(document: dict[str, Any]) -> None:
    document["services"]["api"]["restart_policy"] = "always"


def _wrong_type(document: dict[str, Any]) -> None:
    document["services"]["postgres"]["healthcheck"]["interval"] = 10


def _unknown_top_level_key(document: dict[str, Any]) -> None:
    document["servics"] = document.pop("volumes")


@pytest.mark.parametrize(
    ("breaks", "named"),
    [
        (_unknown_service_key, "restart_policy"),
        (_wrong_type, "interval"),
        (_unknown_top_level_key, "servics"),
    ],
)
def test_the_validator_rejects_a_broken_copy(
    tmp_path: Path, breaks: Callable[[dict[str, Any]], None], named: str
) -> None:
    broken = copy.deepcopy(raw_compose())
    breaks(broken)
    path = tmp_path / "docker-compose.yml"
    path.write_text(yaml.safe_dump(broken, sort_keys=False))
    done = _validate(path)
    assert done.returncode == 1, done.stdout + done.stderr
    assert named in done.stdout + done.stderr


def test_the_stack_has_its_services() -> None:
    assert set(compose()["services"]) == SERVICES


# --- variables, secrets, .env.example -------------------------------------------------------------


def strings(node: Any) -> list[str]:
    """Every string value of a loaded YAML document (Compose interpolates those, not comments)."""
    if isinstance(node, str):
        return [node]
    values = node.values() if isinstance(node, dict) else node if isinstance(node, list) else []
    return [text for value in values for text in strings(value)]


def compose_references() -> list[Reference]:
    return [ref for text in strings(raw_compose()) for ref in references(text)]


def test_every_variable_of_the_compose_file_is_in_env_example_and_no_other() -> None:
    used = {ref.name for ref in compose_references()}
    listed = set(env_example())
    assert used - listed == set(), "referenced by docker-compose.yml, missing from .env.example"
    assert listed - used == set(), "listed in .env.example, used nowhere in docker-compose.yml"


def test_secrets_come_only_from_env_and_stop_compose_when_missing() -> None:
    secret_refs = [ref for ref in compose_references() if SECRET_NAME.search(ref.name)]
    assert {ref.name for ref in secret_refs} == {
        "POSTGRES_PASSWORD",
        "STRSEARCH_BOOTSTRAP_TOKEN",
        "STRSEARCH_WORKER_TOKEN",
        "RAY_AUTH_TOKEN",
    }
    for ref in secret_refs:
        assert ref.op == ":?" and ref.arg.strip(), f"{ref.name} must be ${{{ref.name}:?message}}"
    for name in {ref.name for ref in secret_refs}:
        entry = env_example()[name]
        assert entry.value == "", f"{name}: .env.example must leave it empty (fail fast)"
        assert "secrets." in entry.comment, f"{name}: say how to generate one"


@pytest.mark.parametrize(
    "missing",
    ["POSTGRES_PASSWORD", "STRSEARCH_BOOTSTRAP_TOKEN", "STRSEARCH_WORKER_TOKEN", "RAY_AUTH_TOKEN"],
)
def test_compose_stops_when_a_secret_is_unset(missing: str) -> None:
    env = {k: v for k, v in deployment_env().items() if k != missing}
    with pytest.raises(MissingVariableError, match=missing):
        interpolate_tree(raw_compose(), env)
    with pytest.raises(MissingVariableError, match=missing):
        interpolate_tree(raw_compose(), {**env, missing: ""})


def test_secret_values_appear_only_where_a_variable_puts_them() -> None:
    """No secret is written into the compose file or the Dockerfiles; containers get them
    through ${VAR} only, and only the containers that need them."""
    for path in (COMPOSE, DOCKERFILE, DOCKERFILE_CUDA):
        text = _REFERENCE.sub("", path.read_text())
        assert not re.search(r"strs_[A-Za-z0-9_-]{16,}", text), f"a token in {path.name}"
    for name in SERVICES:
        for key, value in environment(name).items():
            if SECRET_NAME.search(key):
                assert value in deployment_env().values(), f"{name}: {key} is not from .env"
    holders = {
        name for name in SERVICES if deployment_env()["RAY_AUTH_TOKEN"] in str(service(name))
    }
    assert holders == RAY_SERVICES


def test_env_example_documents_each_variable_and_matches_the_compose_defaults() -> None:
    defaults: dict[str, set[str]] = {}
    for ref in compose_references():
        if ref.op in (":-", "-"):
            defaults.setdefault(ref.name, set()).add(ref.arg)
    for entry in env_example().values():
        assert entry.comment, f"{entry.name}: no comment in .env.example"
        if SECRET_NAME.search(entry.name):
            continue
        assert entry.value, f"{entry.name}: give the default value"
        assert defaults.get(entry.name) == {entry.value}, (
            f"{entry.name}: .env.example says {entry.value!r}, the compose default is "
            f"{defaults.get(entry.name)}"
        )


def settings_variables() -> set[str]:
    return {PREFIX + field.name.upper() for field in dataclasses.fields(Settings)}


def cli_variables() -> set[str]:
    found: set[str] = set()

    def walk(command: Any) -> None:
        for param in command.params:
            envvar = param.envvar
            found.update([envvar] if isinstance(envvar, str) else envvar or [])
        for sub in getattr(command, "commands", {}).values():
            walk(sub)

    walk(typer.main.get_command(app))
    return found


def test_every_strsearch_variable_is_one_the_code_reads() -> None:
    known = settings_variables() | cli_variables()
    assert {"STRSEARCH_DATABASE_URL", "STRSEARCH_TOKEN", "STRSEARCH_SERVER"} <= known
    for name in SERVICES:
        unknown = {key for key in environment(name) if key.startswith(PREFIX)} - known
        assert unknown == set(), f"{name} sets variables no code reads: {unknown}"
    api_env = environment("api")
    assert {
        "STRSEARCH_DATABASE_URL",
        "STRSEARCH_BOOTSTRAP_TOKEN",
        "STRSEARCH_WORKER_TOKEN",
    } <= set(api_env)
    # the defaults compose passes when .env leaves a setting out are the service's own
    for key in settings_variables() & set(api_env):
        for ref in references(raw_compose()["services"]["api"]["environment"][key]):
            if ref.op == ":-":
                field = key.removeprefix(PREFIX).lower()
                assert getattr(Settings.from_env({key: ref.arg}), field) == getattr(
                    Settings(), field
                ), key
    # and the values of .env.example are valid settings
    Settings.from_env(api_env)


def test_the_agent_uses_the_worker_token_the_api_creates() -> None:
    api_env, agent_env = environment("api"), environment("agent")
    assert agent_env["STRSEARCH_TOKEN"] == api_env["STRSEARCH_WORKER_TOKEN"]
    # the service refuses a bootstrap token that already belongs to another user
    assert api_env["STRSEARCH_WORKER_TOKEN"] != api_env["STRSEARCH_BOOTSTRAP_TOKEN"]


# --- commands, parsed by the programs they run ----------------------------------------------------


def test_the_api_command_is_accepted_by_the_service_parser(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """``main`` returns 2 for bad settings only after its argument parser accepted the command;
    a command it does not accept ends in SystemExit before that."""
    from service.__main__ import main

    commands = [argv("api"), dockerfile_cmd(DOCKERFILE)]
    monkeypatch.setenv("STRSEARCH_LEASE_SECONDS", "0")
    for args in commands:
        assert args[:3] == ["python", "-m", "service"], args
        assert main(args[3:]) == 2
        assert "STRSEARCH_LEASE_SECONDS" in capsys.readouterr().err
        assert option_value(args, "--host") == "0.0.0.0"
    with pytest.raises(SystemExit):
        main([*argv("api")[3:], "--workers", "4"])
    port = int(option_value(argv("api"), "--port"))
    assert healthcheck_ports("api") == {port}
    assert "/ready" in " ".join(service("api")["healthcheck"]["test"])
    assert [p.target for p in published("api")] == [port]
    assert published("api")[0].host_ip == deployment_env()["API_BIND"]


def test_the_agent_command_and_environment_reach_the_agent_options(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    agent = strsearch_command("agent")
    args = argv("agent")
    assert args[:2] == ["strsearch", "agent"]
    for key, value in environment("agent").items():
        monkeypatch.setenv(key, value)
    params = agent.make_context("agent", args[2:]).params
    assert params["token"] == environment("api")["STRSEARCH_WORKER_TOKEN"]  # STRSEARCH_TOKEN
    assert params["address"] == environment("agent")["RAY_ADDRESS"]  # RAY_ADDRESS
    server = urlsplit(params["server"])
    assert server.hostname == "api"
    assert server.port == int(option_value(argv("api"), "--port"))
    assert PurePosixPath("/shared") in PurePosixPath(params["storage"]).parents
    refused = CliRunner().invoke(app, [*args[1:], "--ray-address", "x:1"])
    assert refused.exit_code == 2
    assert "No such option" in refused.output


def test_the_token_command_finds_the_database_inside_the_api_container() -> None:
    """docs/deploy.md has users made with ``docker compose exec api strsearch token create``."""
    create = strsearch_command("token create")
    database = next(p for p in create.params if p.name == "database")
    assert database.envvar in environment("api")


def test_the_ray_commands_parse_and_agree_on_the_head() -> None:
    head = ray_start(argv("ray-head"))
    assert head["head"] and head["block"] and head["disable_usage_stats"]
    assert head["dashboard_host"] == "0.0.0.0"
    assert head["temp_dir"] in (None, "/tmp/ray")
    for name in ("ray-head", *RAY_WORKERS):
        params = ray_start(argv(name))
        assert params["block"], f"{name}: without --block the container exits at once"
        assert healthcheck_ports(name) == {params["dashboard_agent_listen_port"]}, name
        shm = byte_size(str(service(name)["shm_size"]))
        assert params["object_store_memory"] < shm, f"{name}: object store larger than /dev/shm"
        assert service(name).get("init") is True, f"{name}: Ray needs an init to reap processes"
    for name in RAY_WORKERS:
        params = ray_start(argv(name))
        host, port = params["address"].rsplit(":", 1)
        assert (host, int(port)) == ("ray-head", head["port"]), name
    default = ray_start(dockerfile_cmd(DOCKERFILE_CUDA))
    assert default["address"] == f"ray-head:{head['port']}"
    with pytest.raises(click.NoSuchOption):
        ray_start([*argv("ray-worker"), "--num-gpu=1"])


def test_every_ray_process_uses_token_authentication() -> None:
    for name in RAY_SERVICES:
        env = environment(name)
        assert env.get("RAY_AUTH_MODE") == "token", name
        assert env.get("RAY_AUTH_TOKEN") == deployment_env()["RAY_AUTH_TOKEN"], name


# importing MLflow's server warns about MLflow's own code (SQLAlchemy options of its models, type
# hints of its GenAI modules), not about anything here
@pytest.mark.filterwarnings("ignore:The ``noload`` loader strategy is deprecated")
@pytest.mark.filterwarnings("ignore:.*Any type hint is inferred as AnyType:UserWarning")
def test_the_mlflow_server_command_parses_and_accepts_the_agents() -> None:
    from mlflow.cli import cli
    from mlflow.server.security_utils import is_allowed_host_header

    args = argv("mlflow")
    assert args[:2] == ["mlflow", "server"]
    params = cli.commands["server"].make_context("mlflow server", args[2:]).params
    assert params["host"] == "0.0.0.0"
    assert params["serve_artifacts"]
    assert mounts("mlflow")[params["artifacts_destination"]] in compose()["volumes"]
    assert healthcheck_ports("mlflow") == {params["port"]}
    # MLflow 3 answers 403 to a Host header it does not allow: the agents and trials use the
    # tracking URI's host, people use a tunnel to the published port
    allowed = params["allowed_hosts"].split(",")
    tracking = urlsplit(environment("agent")["MLFLOW_TRACKING_URI"])
    assert (tracking.hostname, tracking.port) == ("mlflow", params["port"])
    tunnel = deployment_env()["MLFLOW_PORT"]
    for host in (tracking.netloc, f"127.0.0.1:{tunnel}", f"localhost:{tunnel}"):
        assert is_allowed_host_header(allowed, host), host
    assert not is_allowed_host_header(allowed, f"mlflow.attacker.example:{params['port']}")
    with pytest.raises(click.NoSuchOption):
        cli.commands["server"].make_context("mlflow server", [*args[2:], "--allow-hosts=*"])


# --- the database ---------------------------------------------------------------------------------


def database_url(value: str) -> URL:
    url = make_url(value)
    url.get_dialect()  # the driver named in the URL is installed
    return url


def test_the_api_and_mlflow_use_the_postgres_service() -> None:
    postgres = environment("postgres")
    init_sql = ROOT / mounts("postgres")["/docker-entrypoint-initdb.d/10-mlflow-database.sql"]
    created = re.findall(r"CREATE DATABASE\s+(\w+)", init_sql.read_text(), re.IGNORECASE)
    urls = {
        "api": database_url(environment("api")["STRSEARCH_DATABASE_URL"]),
        "mlflow": database_url(environment("mlflow")["MLFLOW_BACKEND_STORE_URI"]),
    }
    for name, url in urls.items():
        assert url.drivername == "postgresql+psycopg", name
        assert (url.host, url.port) == ("postgres", 5432), name
        assert url.username == postgres["POSTGRES_USER"], name
        assert url.password == deployment_env()["POSTGRES_PASSWORD"], name
    assert urls["api"].database == postgres["POSTGRES_DB"]
    assert created == [urls["mlflow"].database]  # the init script makes MLflow's database
    assert urls["mlflow"].database != urls["api"].database
    check = service("postgres")["healthcheck"]["test"]
    assert "pg_isready" in check
    assert option_value(check, "-U") == postgres["POSTGRES_USER"]
    assert option_value(check, "-d") == postgres["POSTGRES_DB"]
    assert mounts("postgres")["/var/lib/postgresql/data"] in compose()["volumes"]
    tag = service("postgres")["image"].partition(":")[2]
    assert re.match(r"\d+", tag), "pin PostgreSQL's major version (data files depend on it)"


# --- health, restarts, start order ----------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(SERVICES))
def test_each_service_has_a_health_check_and_a_restart_policy(name: str) -> None:
    definition = service(name)
    check = definition.get("healthcheck")
    assert check and not check.get("disable"), f"{name}: no health check"
    test = check["test"]
    assert isinstance(test, list) and test[0] in ("CMD", "CMD-SHELL"), test
    if test[1:3] == ["python", "-c"]:
        compile(test[3], f"{name} health check", "exec")
    assert definition.get("restart") in RESTART_POLICIES, f"{name}: no restart policy"


def test_services_start_after_the_ones_they_need_are_healthy() -> None:
    needs = {
        "mlflow": {"postgres"},
        "api": {"postgres"},
        "ray-worker": {"ray-head"},
        "ray-worker-gpu": {"ray-head"},
        "agent": {"api", "mlflow", "ray-head"},
    }
    for name, dependencies in needs.items():
        depends_on = service(name).get("depends_on", {})
        for dependency in dependencies:
            assert depends_on[dependency]["condition"] == "service_healthy", (name, dependency)
    for name in SERVICES:
        for dependency, how in service(name).get("depends_on", {}).items():
            if how.get("condition") == "service_healthy":
                assert "healthcheck" in service(dependency), (name, dependency)
    # a restarted head takes its workers and the agent (which lives in its namespaces) along
    for name in ("agent", *RAY_WORKERS):
        assert service(name)["depends_on"]["ray-head"].get("restart") is True, name


def test_the_agent_stops_gracefully() -> None:
    """The agent waits up to 60 s for its search to save state before it releases the job."""
    grace = re.fullmatch(r"(\d+)s", service("agent")["stop_grace_period"])
    assert grace and int(grace[1]) > 60


# --- Ray topology ---------------------------------------------------------------------------------


def test_the_agent_lives_in_the_head_namespaces() -> None:
    agent = service("agent")
    for key in ("network_mode", "ipc", "pid"):
        assert agent.get(key) == "service:ray-head", key
    assert service("ray-head").get("ipc") == "shareable"
    assert "ports" not in agent and "networks" not in agent  # both belong to the head
    assert mounts("agent")["/tmp/ray"] == mounts("ray-head")["/tmp/ray"]
    assert mounts("agent")["/tmp/ray"] in compose()["volumes"]
    host, port = environment("agent")["RAY_ADDRESS"].rsplit(":", 1)
    assert ipaddress.ip_address(host).is_loopback
    assert int(port) == ray_start(argv("ray-head"))["port"]


def test_every_ray_node_and_the_agent_share_the_experiment_storage() -> None:
    sources = {name: mounts(name).get("/shared") for name in RAY_SERVICES}
    volume = sources["agent"]
    assert volume in compose()["volumes"]
    assert sources == dict.fromkeys(RAY_SERVICES, volume)


def test_the_workers_scale_and_the_gpu_worker_is_a_profile() -> None:
    for name in SERVICES:
        assert "container_name" not in service(name), f"{name}: a fixed name cannot scale"
    replicas = service("ray-worker")["deploy"]["replicas"]
    assert isinstance(replicas, int) and replicas >= 1
    for name in RAY_WORKERS:
        assert published(name) == [], f"{name}: a fixed host port cannot scale"
    profiles = {name: service(name).get("profiles") for name in SERVICES}
    assert profiles == {**dict.fromkeys(SERVICES), "ray-worker-gpu": ["gpu"]}
    devices = service("ray-worker-gpu")["deploy"]["resources"]["reservations"]["devices"]
    assert any(d["driver"] == "nvidia" and "gpu" in d["capabilities"] for d in devices)
    assert service("ray-worker-gpu")["build"]["dockerfile"] == "deploy/Dockerfile.cuda"


def test_mlflow_and_the_dashboard_are_published_on_loopback_only() -> None:
    mlflow_port = int(option_value(argv("mlflow"), "--port"))
    dashboard_port = ray_start(argv("ray-head"))["dashboard_port"]
    for name, port in (("mlflow", mlflow_port), ("ray-head", dashboard_port)):
        entries = [p for p in published(name) if p.target == port]
        assert entries, f"{name}: port {port} is not published"
        assert all(p.host_ip == "127.0.0.1" for p in entries), entries
    # nothing else of theirs, and neither PostgreSQL nor Ray's GCS, reaches the host
    assert [p.target for p in published("ray-head")] == [dashboard_port]
    assert [p.target for p in published("mlflow")] == [mlflow_port]
    head_port = ray_start(argv("ray-head"))["port"]
    for name in SERVICES:
        for port in published(name):
            assert port.target not in (5432, head_port), (name, port)


# --- images ---------------------------------------------------------------------------------------


def test_every_build_names_an_existing_dockerfile_and_one_image_one_build() -> None:
    builds: dict[str, Any] = {}
    for name in SERVICES:
        definition = service(name)
        if "build" not in definition:
            continue
        build = definition["build"]
        assert (ROOT / build["context"] / build["dockerfile"]).is_file(), name
        assert builds.setdefault(definition["image"], build) == build, definition["image"]
    assert {b["dockerfile"] for b in builds.values()} == {
        "deploy/Dockerfile",
        "deploy/Dockerfile.cuda",
    }


@dataclasses.dataclass(frozen=True)
class Instruction:
    """One Dockerfile instruction, continuation lines joined."""

    keyword: str
    args: str


def instructions(path: Path) -> list[Instruction]:
    result, pending = [], ""
    for line in path.read_text().splitlines():
        stripped = line.strip()
        if stripped.startswith("#") or (not stripped and not pending):
            continue
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        keyword, _, args = (pending + stripped).partition(" ")
        result.append(Instruction(keyword.upper(), args.strip()))
        pending = ""
    return result


def dockerfile_cmd(path: Path) -> list[str]:
    cmd = [i.args for i in instructions(path) if i.keyword == "CMD"][-1]
    return list(yaml.safe_load(cmd))  # the exec form is a JSON array


def build_args(path: Path) -> dict[str, str]:
    """Defaults of the ARGs of a Dockerfile."""
    args = {}
    for instruction in instructions(path):
        if instruction.keyword == "ARG":
            name, _, default = instruction.args.partition("=")
            args[name] = default
    return args


def bases(path: Path) -> list[str]:
    """The images the stages start from, ARG defaults substituted."""
    froms = [i.args.split()[0] for i in instructions(path) if i.keyword == "FROM"]
    return [interpolate(image, build_args(path)) for image in froms]


@pytest.mark.parametrize("path", [DOCKERFILE, DOCKERFILE_CUDA], ids=["cpu", "cuda"])
def test_the_dockerfiles_install_through_the_constraints_and_hold_no_secret(path: Path) -> None:
    steps = instructions(path)
    installs = [i for i in steps if i.keyword == "RUN" and "pip install" in i.args]
    assert installs, "nothing installed"
    for install in installs:
        assert re.search(r"(-c|--constraint)[ =]constraints\.txt", install.args), install.args
    copied_at = min(
        n for n, i in enumerate(steps) if i.keyword == "COPY" and "constraints.txt" in i.args
    )
    assert copied_at < steps.index(installs[0])
    pins = (ROOT / "constraints.txt").read_text().splitlines()
    assert any(re.fullmatch(r"torch==[\w.+]+", pin) for pin in pins), "torch is pinned there"
    for step in steps:
        if step.keyword in ("ENV", "ARG"):
            for token in shlex.split(step.args):
                name = token.partition("=")[0]
                assert not SECRET_NAME.search(name), f"{path.name}: {step.keyword} {name}"


def test_the_images_run_python_311_as_the_same_unprivileged_user() -> None:
    assert all(re.fullmatch(r"python:3\.11-slim(-\w+)?", base) for base in bases(DOCKERFILE))
    assert all(re.fullmatch(r"nvidia/cuda:[\d.]+-.*runtime.*", b) for b in bases(DOCKERFILE_CUDA))
    cuda_runs = " ".join(i.args for i in instructions(DOCKERFILE_CUDA) if i.keyword == "RUN")
    assert "install" in cuda_runs and "python3.11 " in cuda_runs
    assert "python3.11 -m venv" in cuda_runs
    users = set()
    for path in (DOCKERFILE, DOCKERFILE_CUDA):
        steps = instructions(path)
        user = [i.args for i in steps if i.keyword == "USER"][-1].split(":")[0]
        assert user not in ("root", "0"), path.name
        runs = " ".join(i.args for i in steps if i.keyword == "RUN")
        assert f"--uid {user}" in runs, path.name
        # the volume mount points exist, owned by that user, so new volumes are writable
        for mount_point in ("/shared", "/tmp/ray"):
            assert re.search(rf"chown {user}:\d+ [^&]*{re.escape(mount_point)}\b", runs), (
                mount_point
            )
        users.add(user)
    assert len(users) == 1, "both images must write /shared as the same uid"


# --- .dockerignore --------------------------------------------------------------------------------


def ignore_patterns() -> list[str]:
    lines = (line.strip() for line in DOCKERIGNORE.read_text().splitlines())
    return [line for line in lines if line and not line.startswith("#")]


def ignored(path: str) -> bool:
    """Whether Docker leaves ``path`` (or a folder above it) out of the build context."""
    parts = PurePosixPath(path).parts
    candidates = ["/".join(parts[: n + 1]) for n in range(len(parts))]
    result = False
    for pattern in ignore_patterns():
        negated = pattern.startswith("!")
        glob = pattern.removeprefix("!").strip("/")
        for candidate in candidates:
            name = PurePosixPath(candidate).name
            if fnmatch.fnmatchcase(candidate, glob) or (
                glob.startswith("**/") and fnmatch.fnmatchcase(name, glob[3:])
            ):
                result = not negated
    return result


def test_the_build_context_leaves_out_secrets_and_local_state_but_not_the_sources() -> None:
    for path in (".env", ".env.production", ".git", ".venv", "runs", "str_core/__pycache__"):
        assert ignored(path), path
    for dockerfile in (DOCKERFILE, DOCKERFILE_CUDA):
        for step in instructions(dockerfile):
            if step.keyword != "COPY" or "--from=" in step.args:
                continue
            sources = [a for a in shlex.split(step.args) if not a.startswith("--")][:-1]
            for source in sources:
                assert (ROOT / source).exists(), f"{dockerfile.name}: COPY {source}"
                assert not ignored(source.rstrip("/")), f".dockerignore drops {source}"
