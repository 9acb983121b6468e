"""The Kubernetes manifests of deploy/k8s, checked offline (no cluster runs here).

Three layers of checks, each shown able to fail on deliberately broken copies of the manifests:

- **Schemas.** Every object of a built-in kind is validated by kubernetes-validate in strict
  mode (unknown fields are errors) against the schemas of Kubernetes ``K8S_VERSION``. KubeRay's
  CRD is not pip-installable, so the RayCluster is checked in two parts: each pod template (head
  and every worker group), and the autoscaler's container options, as a core ``PodTemplate``,
  strictly; and its envelope against ``k8s_schemas/raycluster-ray.io-v1.json``, a JSON schema
  written for this project from KubeRay's published ``ray.io/v1`` RayCluster API
  (``ray-project/kuberay``: ``ray-operator/apis/ray/v1/raycluster_types.go`` and the API
  reference, KubeRay 1.6) for the fields we use, with ``additionalProperties: false``.
- **Cross-references** a schema cannot see: kustomization lists every manifest; selectors meet
  pod labels; target and probe ports name container ports; every Secret reference names a key
  of ``secrets.example.yaml``; every ``STRSEARCH_*`` variable is one the code of that container
  reads (``service.settings.Settings`` for the API, the ``envvar`` options of ``strsearch
  agent``); the agent's and MLflow's command lines parse with the real CLIs.
- **Deployment rules**: the agent sidecar shares ``/tmp/ray`` and the process namespace with the
  Ray head and talks to ``127.0.0.1:6379``; every Ray process gets ``RAY_AUTH_MODE`` and
  ``RAY_AUTH_TOKEN`` from the Secret; the shared claim is ReadWriteMany and mounted at one path
  everywhere; the GPU group asks for ``nvidia.com/gpu`` with the CUDA image and scales from
  zero; ``rayVersion`` is the installed Ray; MLflow and the Ray head are never LoadBalancer or
  NodePort; pods run as the images' non-root user.

Each check returns a list of problems: ``test_check_passes`` runs it on the real files (none),
``test_check_catches`` on each broken copy listed in ``BREAKAGES`` (at least one).
"""

from __future__ import annotations

import copy
import dataclasses
import importlib.metadata
import json
import os
import re
import shlex
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import click
import jsonschema
import kubernetes_validate
import pytest
import ray
import typer
import yaml

from service.settings import PREFIX, Settings

ROOT = Path(__file__).resolve().parents[2]
K8S_DIR = ROOT / "deploy" / "k8s"
RAYCLUSTER_SCHEMA = Path(__file__).with_name("k8s_schemas") / "raycluster-ray.io-v1.json"
K8S_VERSION = "1.33.0"
SECRET_EXAMPLE = "secrets.example.yaml"
NOT_APPLIED = {"kustomization.yaml", SECRET_EXAMPLE}
RAY_TMP = "/tmp/ray"
AGENT_RAY_ADDRESS = "127.0.0.1:6379"
GPU = "nvidia.com/gpu"
DOCKERFILES = {"": "Dockerfile", "-cuda": "Dockerfile.cuda"}  # image tag suffix -> deploy/<file>
ALLOWED_HOSTS_ENV = "MLFLOW_SERVER_ALLOWED_HOSTS"
CLUSTER_SCOPED = {"Namespace", "PersistentVolume", "StorageClass", "ClusterRole"}

Obj = dict[str, Any]


# --- the manifests ------------------------------------------------------------------------------


@dataclass
class Manifests:
    """The files of deploy/k8s, parsed (tests break deep copies of it)."""

    files: dict[str, list[Obj]]  # every *.yaml but kustomization.yaml
    kustomization: Obj
    readme: str
    secret_example_text: str
    image_users: dict[str, tuple[int, int] | None]  # image tag suffix -> its Dockerfile's USER

    def objects(self, *, applied_only: bool = False) -> list[Obj]:
        chosen = [
            objs for name, objs in self.files.items() if not (applied_only and name in NOT_APPLIED)
        ]
        return [obj for objs in chosen for obj in objs]

    def of_kind(self, kind: str) -> list[Obj]:
        return [obj for obj in self.objects() if obj.get("kind") == kind]

    def get(self, kind: str, name: str) -> Obj:
        (found,) = [obj for obj in self.of_kind(kind) if obj["metadata"]["name"] == name]
        return found

    @property
    def raycluster(self) -> Obj:
        (cluster,) = self.of_kind("RayCluster")
        return cluster

    @property
    def secret(self) -> Obj:
        (secret,) = self.files[SECRET_EXAMPLE]
        return secret

    def secret_keys(self) -> set[str]:
        return set(self.secret.get("stringData", {})) | set(self.secret.get("data", {}))

    def pod_templates(self) -> list[tuple[str, Obj]]:
        """(description, pod template) of every Deployment and every RayCluster group."""
        deployments = [
            (f"Deployment {d['metadata']['name']}", d["spec"]["template"])
            for d in self.of_kind("Deployment")
        ]
        return deployments + ray_templates(self.raycluster)


def dockerfile_user(path: Path) -> tuple[int, int] | None:
    """The numeric ``USER uid:gid`` an image finally runs as (None: not numeric, or no file)."""
    users = re.findall(r"^USER\s+(\S+)\s*$", path.read_text() if path.exists() else "", re.M)
    found = re.fullmatch(r"(\d+):(\d+)", users[-1]) if users else None
    return (int(found[1]), int(found[2])) if found else None


def load_manifests() -> Manifests:
    files = {
        path.name: [doc for doc in yaml.safe_load_all(path.read_text()) if doc is not None]
        for path in sorted(K8S_DIR.glob("*.yaml"))
        if path.name != "kustomization.yaml"
    }
    return Manifests(
        files=files,
        kustomization=yaml.safe_load((K8S_DIR / "kustomization.yaml").read_text()),
        readme=(K8S_DIR / "README.md").read_text(),
        secret_example_text=(K8S_DIR / SECRET_EXAMPLE).read_text(),
        image_users={s: dockerfile_user(ROOT / "deploy" / f) for s, f in DOCKERFILES.items()},
    )


@pytest.fixture(scope="module")
def manifests() -> Manifests:
    return load_manifests()


# --- accessors ----------------------------------------------------------------------------------


def ray_templates(cluster: Obj) -> list[tuple[str, Obj]]:
    spec = cluster["spec"]
    groups = [
        (f"RayCluster group {g['groupName']}", g["template"])
        for g in spec.get("workerGroupSpecs", [])
    ]
    return [("RayCluster head", spec["headGroupSpec"]["template"]), *groups]


def containers(template: Obj) -> list[Obj]:
    return list(template["spec"]["containers"])


def container(template: Obj, name: str) -> Obj:
    (found,) = [c for c in containers(template) if c["name"] == name]
    return found


def head_template(cluster: Obj) -> Obj:
    return cluster["spec"]["headGroupSpec"]["template"]


def worker_group(cluster: Obj, name: str) -> Obj:
    (group,) = [g for g in cluster["spec"]["workerGroupSpecs"] if g["groupName"] == name]
    return group


def env_entry(cont: Obj, name: str) -> Obj:
    entries = [e for e in cont.get("env", []) if e["name"] == name]
    return entries[-1] if entries else {}


def env_value(cont: Obj, name: str) -> str | None:
    return env_entry(cont, name).get("value")


def from_secret(cont: Obj, name: str) -> bool:
    entry = env_entry(cont, name)
    return "value" not in entry and "secretKeyRef" in entry.get("valueFrom", {})


def mount_at(cont: Obj, path: str) -> Obj:
    """The volume mount at ``path``, or the one holding ``path`` below its mount point."""
    mounts = [
        m
        for m in cont.get("volumeMounts", [])
        if path == m["mountPath"] or path.startswith(m["mountPath"].rstrip("/") + "/")
    ]
    return mounts[0] if mounts else {}


def claim_at(template: Obj, cont: Obj, path: str) -> str | None:
    """Name of the PersistentVolumeClaim that ``cont`` sees at ``path``."""
    name = mount_at(cont, path).get("name")
    volumes = [v for v in template["spec"].get("volumes", []) if v["name"] == name]
    return volumes[0].get("persistentVolumeClaim", {}).get("claimName") if volumes else None


def labels(template: Obj) -> dict[str, str]:
    return dict(template.get("metadata", {}).get("labels", {}))


def selects(selector: Obj, template: Obj) -> bool:
    """Whether a label selector (matchLabels, matchExpressions with In) selects the pods."""
    pod = labels(template)
    expressions = selector.get("matchExpressions", [])
    assert all(e["operator"] == "In" for e in expressions), "only In is implemented"
    return selector.get("matchLabels", {}).items() <= pod.items() and all(
        pod.get(e["key"]) in e["values"] for e in expressions
    )


def has_port(cont: Obj, target: int | str) -> bool:
    key = "name" if isinstance(target, str) else "containerPort"
    return any(port.get(key) == target for port in cont.get("ports", []))


def arg_after(argv: list[str], flag: str) -> str | None:
    return argv[argv.index(flag) + 1] if flag in argv[:-1] else None


def walk(node: Any) -> Iterator[Obj]:
    """Every mapping inside ``node``, depth first."""
    if isinstance(node, dict):
        yield node
        for value in node.values():
            yield from walk(value)
    elif isinstance(node, list):
        for item in node:
            yield from walk(item)


def agent_argv(template: Obj) -> list[str]:
    """The ``strsearch agent ...`` command line the agent container finally execs."""
    agent = container(template, "agent")
    for line in "\n".join([*agent.get("command", []), *agent.get("args", [])]).splitlines():
        words = shlex.split(line)
        words = words[1:] if words[:1] == ["exec"] else words
        if words[:2] == ["strsearch", "agent"]:
            return words
    raise AssertionError("no `strsearch agent` command in the agent container")


def agent_cli() -> Any:
    """``strsearch agent`` as Typer builds it (on Typer's own copy of click)."""
    from strsearch.cli.app import app

    return typer.main.get_command(app).commands["agent"]


def envvars_of(command: Any) -> set[str]:
    names: set[str] = set()
    for param in command.params:
        names.update([param.envvar] if isinstance(param.envvar, str) else param.envvar or [])
    return names


HostCheck = Callable[[list[str], str], bool]


def mlflow_server_cli() -> tuple[Any, Callable[[str], list[str]], HostCheck]:
    """MLflow's ``server`` command, its parser of allowed hosts and its Host header check.

    ``mlflow server`` hands ``--allowed-hosts`` to its security middleware in
    ``MLFLOW_SERVER_ALLOWED_HOSTS``; the parser reads that variable as the middleware does.
    Importing them loads most of MLflow, which warns at import about its own code (SQLAlchemy
    2.1 deprecating MLflow's ``noload`` relationships, pyfunc's ``Any`` type hints). The suite
    turns warnings into errors; these are MLflow's, so they are silenced for the import only.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from mlflow.cli import server
        from mlflow.server import security_utils

    def allowed_hosts(value: str) -> list[str]:
        saved = os.environ.get(ALLOWED_HOSTS_ENV)
        os.environ[ALLOWED_HOSTS_ENV] = value
        try:
            return security_utils.get_allowed_hosts_from_env() or []
        finally:
            if saved is None:
                del os.environ[ALLOWED_HOSTS_ENV]
            else:
                os.environ[ALLOWED_HOSTS_ENV] = saved

    return server, allowed_hosts, security_utils.is_allowed_host_header


def service_url_problems(m: Manifests, url: str, what: str) -> list[str]:
    """``url`` must be ``http://<Service>:<port>`` of a Service of the manifests."""
    parts = urlsplit(url)
    services = {s["metadata"]["name"]: s for s in m.of_kind("Service")}
    if parts.scheme != "http" or parts.hostname not in services:
        return [f"{what}: {url!r} names no Service ({sorted(services)})"]
    ports = [p["port"] for p in services[parts.hostname]["spec"]["ports"]]
    return [] if parts.port in ports else [f"{what}: {url!r}: the Service has ports {ports}"]


# --- checks: schemas ----------------------------------------------------------------------------


def validate_core(obj: Obj) -> list[str]:
    where = f"{obj.get('kind')} {obj.get('metadata', {}).get('name')}"
    try:
        kubernetes_validate.validate(obj, K8S_VERSION, strict=True)
    except kubernetes_validate.ValidationError as exc:
        return [f"{where}: {'.'.join(map(str, exc.path))}: {exc.message}"]
    except kubernetes_validate.SchemaNotFoundError as exc:
        return [f"{where}: {exc.message}"]
    return []


def as_pod_template(name: str, template: Obj) -> Obj:
    return {
        "apiVersion": "v1",
        "kind": "PodTemplate",
        "metadata": {"name": name},
        "template": template,
    }


def check_core_schemas(m: Manifests) -> list[str]:
    """Every object of a built-in kind, strictly, against Kubernetes K8S_VERSION."""
    return [p for obj in m.objects() if obj["kind"] != "RayCluster" for p in validate_core(obj)]


def check_raycluster_envelope(m: Manifests) -> list[str]:
    """The RayCluster against our schema of KubeRay's ray.io/v1 API (itself a valid schema)."""
    schema = json.loads(RAYCLUSTER_SCHEMA.read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    validator = jsonschema.Draft202012Validator(schema)
    return [
        f"RayCluster: {'.'.join(map(str, e.path))}: {e.message}"
        for e in validator.iter_errors(m.raycluster)
    ]


def check_raycluster_pod_templates(m: Manifests) -> list[str]:
    """Each group's pod template, and the autoscaler's container options, as core objects."""
    problems: list[str] = []
    for what, template in ray_templates(m.raycluster):
        name = re.sub(r"[^a-z0-9]+", "-", what.lower())
        problems += [f"{what}: {p}" for p in validate_core(as_pod_template(name, template))]
    options = m.raycluster["spec"].get("autoscalerOptions", {})
    fields = ("resources", "securityContext", "env", "envFrom", "volumeMounts")
    autoscaler = {"name": "autoscaler", "image": "x"} | {
        k: options[k] for k in fields if k in options
    }
    wrapped = as_pod_template("autoscaler", {"spec": {"containers": [autoscaler]}})
    return problems + [f"autoscalerOptions: {p}" for p in validate_core(wrapped)]


# --- checks: cross-references -------------------------------------------------------------------


def check_kustomization(m: Manifests) -> list[str]:
    """kustomization.yaml lists every manifest once, and not the Secret template."""
    k = m.kustomization
    listed = list(k.get("resources", []))
    expected = {name for name in m.files if name not in NOT_APPLIED}
    problems = [f"lists {name} twice" for name in sorted(set(listed)) if listed.count(name) > 1]
    problems += [f"misses {name}" for name in sorted(expected - set(listed))]
    unknown = set(listed) - expected - {SECRET_EXAMPLE}
    problems += [f"lists {name}, not a manifest here" for name in sorted(unknown)]
    if SECRET_EXAMPLE in listed:
        problems.append(f"lists {SECRET_EXAMPLE}: its placeholders would replace the real Secret")
    if (k.get("apiVersion"), k.get("kind")) != ("kustomize.config.k8s.io/v1beta1", "Kustomization"):
        problems.append("is not a kustomize.config.k8s.io/v1beta1 Kustomization")
    return [f"kustomization.yaml {p}" for p in problems]


def check_namespaces(m: Manifests) -> list[str]:
    """One namespace: the Namespace object's, the kustomization's and every object's."""
    (namespace,) = m.of_kind("Namespace")
    name = namespace["metadata"]["name"]
    problems = [] if m.kustomization.get("namespace") == name else ["kustomization namespace"]
    return problems + [
        f"{obj['kind']} {obj['metadata']['name']} is not in {name}"
        for obj in m.objects()
        if obj["kind"] not in CLUSTER_SCOPED and obj["metadata"].get("namespace") != name
    ]


def check_selectors_and_ports(m: Manifests) -> list[str]:
    """Services select pods and target their ports; Deployments and PDBs select their pods."""
    problems: list[str] = []
    templates = [t for _, t in m.pod_templates()]
    for service in m.of_kind("Service"):
        name, selector = service["metadata"]["name"], service["spec"].get("selector") or {}
        matched = [t for t in templates if selector and selects({"matchLabels": selector}, t)]
        if not matched:
            problems.append(f"Service {name}: selector {selector} matches no pod template")
        for port in service["spec"]["ports"]:
            target = port.get("targetPort", port["port"])
            if not all(any(has_port(c, target) for c in containers(t)) for t in matched):
                problems.append(f"Service {name}: targetPort {target!r} is no container port")
    for deployment in m.of_kind("Deployment"):
        if not selects(deployment["spec"]["selector"], deployment["spec"]["template"]):
            problems.append(
                f"Deployment {deployment['metadata']['name']}: selector misses its pods"
            )
    for pdb in m.of_kind("PodDisruptionBudget"):
        if not any(selects(pdb["spec"]["selector"], t) for t in templates):
            problems.append(f"PodDisruptionBudget {pdb['metadata']['name']} selects no pods")
    return problems


def check_probes(m: Manifests) -> list[str]:
    """Probes hit real ports; the API: readiness /ready, liveness /health, ≥2 replicas."""
    problems: list[str] = []
    for what, template in m.pod_templates():
        for cont in containers(template):
            for kind in ("startupProbe", "livenessProbe", "readinessProbe"):
                port = cont.get(kind, {}).get("httpGet", {}).get("port")
                if port is not None and not has_port(cont, port):
                    problems.append(f"{what}/{cont['name']}: {kind} port {port!r} is no port")
    deployment = m.get("Deployment", "strsearch-api")
    cont = container(deployment["spec"]["template"], "api")
    for kind, path in (("readinessProbe", "/ready"), ("livenessProbe", "/health")):
        if cont.get(kind, {}).get("httpGet", {}).get("path") != path:
            problems.append(f"API {kind} must GET {path}")
    if deployment["spec"].get("replicas", 1) < 2:
        problems.append("the API runs fewer than 2 replicas")
    port = arg_after(cont.get("args", []), "--port")
    if cont["command"] != ["python", "-m", "service"] or not has_port(cont, int(port or 0)):
        problems.append(f"API: `python -m service --port {port}` serves no container port")
    return problems


def secret_refs(node: Any) -> Iterator[tuple[str, str | None]]:
    """(Secret name, key or None) of every secretKeyRef, secretRef and secret volume."""
    for mapping in walk(node):
        if isinstance(ref := mapping.get("secretKeyRef"), dict):
            yield ref["name"], ref["key"]
        if isinstance(ref := mapping.get("secretRef"), dict):
            yield ref["name"], None
        if isinstance(ref := mapping.get("secret"), dict) and "secretName" in ref:
            yield ref["secretName"], None


def check_secret_refs(m: Manifests) -> list[str]:
    """Every reference names the example Secret and one of its keys; every key is read."""
    name, keys = m.secret["metadata"]["name"], m.secret_keys()
    refs = list(secret_refs(m.objects(applied_only=True)))
    problems = [f"reference to Secret {ref!r}, not {name!r}" for ref, _ in refs if ref != name]
    problems += [
        f"Secret {name} has no key {key!r} (it has {sorted(keys)})"
        for ref, key in refs
        if ref == name and key is not None and key not in keys
    ]
    used = {key for _, key in refs}
    return problems + [f"Secret key {key!r} is never read" for key in sorted(keys - used)]


def check_secret_instructions(m: Manifests) -> list[str]:
    """The ``kubectl create secret`` commands (README and template) create exactly its keys."""
    problems: list[str] = []
    for what, text in (("README.md", m.readme), (SECRET_EXAMPLE, m.secret_example_text)):
        if "kubectl -n strsearch create secret generic strsearch-secrets" not in text:
            problems.append(f"{what}: no `kubectl create secret generic` command")
        literals = set(re.findall(r"--from-literal=([a-z0-9-]+)=", text))
        if literals != m.secret_keys():
            problems.append(f"{what} creates {sorted(literals)}, not {sorted(m.secret_keys())}")
    return problems


def check_strsearch_env(m: Manifests) -> list[str]:
    """STRSEARCH_* variables: only ones the code of that container reads, and the needed ones."""
    settings = {PREFIX + field.name.upper() for field in dataclasses.fields(Settings)}
    readers = {
        "api": settings,
        "agent": {v for v in envvars_of(agent_cli()) if v.startswith(PREFIX)},
    }
    needed = {
        "api": {"STRSEARCH_DATABASE_URL", "STRSEARCH_WORKER_TOKEN"},
        "agent": {"STRSEARCH_TOKEN"},
    }
    problems = [
        f"{n} is read by no code"
        for group in needed.values()
        for n in sorted(group)
        if n not in settings | readers["agent"]
    ]
    for what, template in m.pod_templates():
        for cont in containers(template):
            where, names = f"{what}/{cont['name']}", {e["name"] for e in cont.get("env", [])}
            unread = {n for n in names if n.startswith(PREFIX)} - readers.get(cont["name"], set())
            problems += [f"{where}: nothing there reads {n}" for n in sorted(unread)]
            missing = needed.get(cont["name"], set()) - names
            problems += [f"{where}: {n} is not set" for n in sorted(missing)]
    return problems


def check_agent(m: Manifests) -> list[str]:
    """The agent is a Ray driver beside ray-head: same /tmp/ray and processes, local GCS, CLI.

    A driver attaches to the Ray node whose raylet it finds among the processes it can see
    (``ray._private.services.find_node_ids``), so the head pod shares its process namespace.
    """
    template = head_template(m.raycluster)
    names = [c["name"] for c in containers(template)]
    if names[:1] != ["ray-head"] or "agent" not in names:
        return [f"head containers {names}: ray-head must be first (KubeRay), the agent beside it"]
    head, sidecar = container(template, "ray-head"), container(template, "agent")
    problems: list[str] = []
    if template["spec"].get("shareProcessNamespace") is not True:
        problems.append("the head pod does not share its process namespace with the agent")
    shared_tmp = mount_at(head, RAY_TMP).get("name")
    volumes = {v["name"]: v for v in template["spec"].get("volumes", [])}
    if (
        mount_at(head, RAY_TMP).get("mountPath") != RAY_TMP
        or mount_at(sidecar, RAY_TMP).get("name") != shared_tmp
        or "emptyDir" not in volumes.get(shared_tmp, {})
    ):
        problems.append(f"agent and ray-head do not share one emptyDir at {RAY_TMP}")
    if env_value(sidecar, "RAY_ADDRESS") != AGENT_RAY_ADDRESS:
        problems.append(f"agent RAY_ADDRESS is not {AGENT_RAY_ADDRESS}")
    if not has_port(head, int(AGENT_RAY_ADDRESS.rsplit(":", 1)[1])):
        problems.append(f"ray-head does not open the GCS port of {AGENT_RAY_ADDRESS}")
    tracking_uri = env_value(sidecar, "MLFLOW_TRACKING_URI") or ""
    problems += service_url_problems(m, tracking_uri, "agent MLFLOW_TRACKING_URI")
    argv = agent_argv(template)
    try:
        params = agent_cli().make_context("agent", argv[2:]).params
    except typer.TyperException as exc:
        return [*problems, f"`{shlex.join(argv)}`: {exc}"]
    return problems + service_url_problems(m, params["server"], "agent --server")


def check_mlflow(m: Manifests) -> list[str]:
    """``mlflow server`` parses, serves its container port and accepts its clients' Host."""
    server, parse_allowed_hosts, host_allowed = mlflow_server_cli()
    template = m.get("Deployment", "strsearch-mlflow")["spec"]["template"]
    (cont,) = containers(template)
    if cont["command"] != ["mlflow", "server"]:
        return [f"the MLflow command is {cont['command']}"]
    try:
        params = server.make_context("mlflow server", list(cont["args"])).params
    except click.ClickException as exc:
        return [f"mlflow server {cont['args']}: {exc.format_message()}"]
    problems: list[str] = []
    if not has_port(cont, int(params["port"])):
        problems.append(f"mlflow serves port {params['port']}, not a container port")
    if params["host"] != "0.0.0.0" or not params["serve_artifacts"]:
        problems.append("mlflow must listen on 0.0.0.0 and proxy artifacts (--serve-artifacts)")
    if claim_at(template, cont, str(params["artifacts_destination"])) is None:
        problems.append(f"artifacts go to {params['artifacts_destination']}, on no claim")
    if not from_secret(cont, "MLFLOW_BACKEND_STORE_URI"):
        problems.append("MLFLOW_BACKEND_STORE_URI does not come from the Secret")
    hosts = parse_allowed_hosts(params["allowed_hosts"] or "")
    clients = {
        urlsplit(env_value(c, "MLFLOW_TRACKING_URI") or "").netloc
        for _, t in ray_templates(m.raycluster)
        for c in containers(t)
    } - {""}
    for host in sorted(clients | {"localhost:5000", "127.0.0.1:15000"}):
        if not host_allowed(hosts, host):
            problems.append(f"mlflow refuses Host {host!r} (--allowed-hosts {hosts})")
    if not hosts or "*" in hosts or host_allowed(hosts, "attacker.example.com"):
        problems.append("mlflow --allowed-hosts accepts any host")
    return problems


# --- checks: deployment rules -------------------------------------------------------------------


def check_ray_auth(m: Manifests) -> list[str]:
    """Every Ray container, the agent and the autoscaler use token auth with the Secret's token."""
    spec = m.raycluster["spec"]
    targets = [
        (f"{what}/{c['name']}", c) for what, t in ray_templates(m.raycluster) for c in containers(t)
    ]
    if spec.get("enableInTreeAutoscaling"):
        targets.append(("autoscaler", spec.get("autoscalerOptions", {})))
    problems = [
        f"{what}: RAY_AUTH_MODE is not token"
        for what, c in targets
        if env_value(c, "RAY_AUTH_MODE") != "token"
    ]
    return problems + [
        f"{what}: RAY_AUTH_TOKEN does not come from a Secret"
        for what, c in targets
        if not from_secret(c, "RAY_AUTH_TOKEN")
    ]


def check_shared_storage(m: Manifests) -> list[str]:
    """One ReadWriteMany claim at one path in every Ray container, holding the agent's storage."""
    template = head_template(m.raycluster)
    storage = arg_after(agent_argv(template), "--storage") or ""
    sidecar = container(template, "agent")
    path, claim = mount_at(sidecar, storage).get("mountPath"), claim_at(template, sidecar, storage)
    if path is None or claim is None:
        return [f"the agent's --storage {storage!r} is on no claim"]
    problems = [
        f"{what}/{c['name']}: claim {claim} is not mounted at {path}"
        for what, t in ray_templates(m.raycluster)
        for c in containers(t)
        if mount_at(c, path).get("mountPath") != path or claim_at(t, c, path) != claim
    ]
    pvcs = {p["metadata"]["name"]: p for p in m.of_kind("PersistentVolumeClaim")}
    if "ReadWriteMany" not in pvcs.get(claim, {}).get("spec", {}).get("accessModes", []):
        problems.append(f"PersistentVolumeClaim {claim} is missing or not ReadWriteMany")
    return problems


def image_version() -> str:
    return importlib.metadata.version("strsearch")


def check_ray_groups(m: Manifests) -> list[str]:
    """Ray version, pinned images, autoscaling bounds, the GPU group's GPUs and toleration."""
    spec = m.raycluster["spec"]
    problems: list[str] = []
    if spec.get("rayVersion") != ray.__version__:
        problems.append(f"rayVersion {spec.get('rayVersion')} is not Ray {ray.__version__}")
    if not spec.get("enableInTreeAutoscaling"):
        problems.append("the Ray autoscaler is off")
    gpu_groups = []
    for group in spec["workerGroupSpecs"]:
        name, ray_container = group["groupName"], containers(group["template"])[0]
        low, high = group["minReplicas"], group["maxReplicas"]
        if not low <= group.get("replicas", low) <= high or high < 1:
            problems.append(f"group {name}: replicas outside [{low}, {high}]")
        resources = ray_container.get("resources", {})
        gpus = {resources.get(side, {}).get(GPU) for side in ("requests", "limits")}
        if gpus == {None}:
            continue
        gpu_groups.append(name)
        if len(gpus) != 1 or None in gpus or int(gpus.pop()) < 1:
            problems.append(f"group {name}: {GPU} requests and limits differ or are < 1")
        if not ray_container["image"].endswith("-cuda"):
            problems.append(f"group {name} asks for GPUs without the CUDA image")
        if low != 0:
            problems.append(f"group {name}: minReplicas {low}, GPU workers must scale from 0")
        tolerations = group["template"]["spec"].get("tolerations", [])
        if not any(t.get("key") == GPU and t.get("effect") == "NoSchedule" for t in tolerations):
            problems.append(f"group {name} does not tolerate the {GPU} NoSchedule taint")
    if not gpu_groups:
        problems.append(f"no worker group requests {GPU}")
    version = image_version()
    return problems + [
        f"{what}/{c['name']}: image {c['image']} is not the project's {version}"
        for what, t in m.pod_templates()
        for c in containers(t)
        if c["image"] not in {f"strsearch:{version}", f"strsearch:{version}-cuda"}
    ]


def check_not_exposed(m: Manifests) -> list[str]:
    """MLflow and the Ray head stay in the cluster (ClusterIP) behind a NetworkPolicy."""
    problems = [
        f"Service {s['metadata']['name']} is {s['spec'].get('type')}"
        for s in m.of_kind("Service")
        if s["spec"].get("type", "ClusterIP") in {"LoadBalancer", "NodePort"}
    ]
    head = m.raycluster["spec"]["headGroupSpec"]
    if head.get("serviceType", "ClusterIP") != "ClusterIP" or head.get("enableIngress"):
        problems.append("the Ray head service must be ClusterIP, without ingress")
    tracking = ("mlflow", m.get("Deployment", "strsearch-mlflow")["spec"]["template"])
    guarded = [tracking, *ray_templates(m.raycluster)]
    for policy in m.of_kind("NetworkPolicy"):
        guarded = [(w, t) for w, t in guarded if not selects(policy["spec"]["podSelector"], t)]
    return problems + [f"{what} is covered by no NetworkPolicy" for what, _ in guarded]


def check_pod_security(m: Manifests) -> list[str]:
    """Non-root as the images' user, no escalation or capabilities, seccomp, resources."""
    problems: list[str] = []
    for what, template in m.pod_templates():
        pod = template["spec"].get("securityContext", {})
        if pod.get("runAsNonRoot") is not True:
            problems.append(f"{what}: pod may run as root")
        if pod.get("seccompProfile", {}).get("type") != "RuntimeDefault":
            problems.append(f"{what}: seccomp profile is not RuntimeDefault")
        for cont in containers(template):
            where, sc = f"{what}/{cont['name']}", cont.get("securityContext", {})
            image_user = m.image_users["-cuda" if cont["image"].endswith("-cuda") else ""]
            user = tuple(sc.get(k, pod.get(k)) for k in ("runAsUser", "runAsGroup"))
            if image_user is None or user != image_user:
                problems.append(f"{where}: runs as {user}, its image's USER is {image_user}")
            if sc.get("allowPrivilegeEscalation") is not False:
                problems.append(f"{where}: privilege escalation allowed")
            if sc.get("capabilities", {}).get("drop") != ["ALL"]:
                problems.append(f"{where}: capabilities not dropped")
            resources = cont.get("resources", {})
            problems += [
                f"{where}: no cpu/memory {side}"
                for side in ("requests", "limits")
                if not {"cpu", "memory"} <= set(resources.get(side, {}))
            ]
    return problems


CHECKS: dict[str, Callable[[Manifests], list[str]]] = {
    name.removeprefix("check_"): check
    for name, check in list(globals().items())
    if name.startswith("check_") and callable(check)
}


# --- breakages: broken copies each check must notice --------------------------------------------


def dep(m: Manifests, name: str) -> Obj:
    return m.get("Deployment", f"strsearch-{name}")["spec"]


def svc(m: Manifests, name: str) -> Obj:
    return m.get("Service", f"strsearch-{name}")["spec"]


def api(m: Manifests) -> Obj:
    return container(dep(m, "api")["template"], "api")


def mlflow(m: Manifests) -> Obj:
    return container(dep(m, "mlflow")["template"], "mlflow")


def ray_spec(m: Manifests) -> Obj:
    return m.raycluster["spec"]


def head_pod(m: Manifests) -> Obj:
    return head_template(m.raycluster)["spec"]


def agent(m: Manifests) -> Obj:
    return container(head_template(m.raycluster), "agent")


def gpu(m: Manifests) -> Obj:
    return worker_group(m.raycluster, "gpu")


def gpu_worker(m: Manifests) -> Obj:
    return containers(gpu(m)["template"])[0]


def set_env(cont: Obj, name: str, **entry: Any) -> None:
    cont["env"] = [e for e in cont.get("env", []) if e["name"] != name] + [{"name": name, **entry}]


def drop_env(cont: Obj, name: str) -> None:
    cont["env"] = [e for e in cont.get("env", []) if e["name"] != name]


def set_arg(cont: Obj, flag: str, value: str) -> None:
    cont["args"][cont["args"].index(flag) + 1] = value


def edit_agent_script(m: Manifests, old: str, new: str) -> None:
    assert old in agent(m)["args"][-1]
    agent(m)["args"][-1] = agent(m)["args"][-1].replace(old, new)


def swap_agent_token(m: Manifests) -> None:
    """The agent given the API's variable name for the worker token instead of its own."""
    set_env(
        agent(m),
        "STRSEARCH_WORKER_TOKEN",
        valueFrom=env_entry(agent(m), "STRSEARCH_TOKEN")["valueFrom"],
    )
    drop_env(agent(m), "STRSEARCH_TOKEN")


def readme_key(m: Manifests) -> None:
    m.readme = m.readme.replace("--from-literal=worker-token=", "--from-literal=agent-token=")


# fmt: off
BREAKAGES: list[tuple[str, str, Callable[[Manifests], object]]] = [
    ("core_schemas", "misspelt field", lambda m: api(m).update(imagePullPolicyy="Always")),
    ("core_schemas", "wrong type", lambda m: dep(m, "mlflow").update(replicas="one")),
    ("core_schemas", "misspelt Service field", lambda m: svc(m, "api").update(selecter={})),
    ("raycluster_envelope", "misspelt field", lambda m: gpu(m).update(minReplica=0)),
    ("raycluster_envelope", "rayStartParams value not a string",
     lambda m: ray_spec(m)["headGroupSpec"]["rayStartParams"].update({"num-cpus": 0})),
    ("raycluster_envelope", "no maxReplicas", lambda m: gpu(m).pop("maxReplicas")),
    ("raycluster_envelope", "unknown upscalingMode",
     lambda m: ray_spec(m)["autoscalerOptions"].update(upscalingMode="Fast")),
    ("raycluster_pod_templates", "misspelt pod field",
     lambda m: gpu(m)["template"]["spec"].update(tolerationz=[])),
    ("raycluster_pod_templates", "containerPort of the wrong type",
     lambda m: head_pod(m)["containers"][0]["ports"][0].update(containerPort="6379")),
    ("raycluster_pod_templates", "misspelt autoscaler env field",
     lambda m: ray_spec(m)["autoscalerOptions"]["env"][1].update(valueFromm={})),
    ("kustomization", "a manifest left out",
     lambda m: m.kustomization["resources"].remove("mlflow.yaml")),
    ("kustomization", "the Secret template applied",
     lambda m: m.kustomization["resources"].append(SECRET_EXAMPLE)),
    ("namespaces", "object in another namespace",
     lambda m: m.get("Service", "strsearch-mlflow")["metadata"].update(namespace="default")),
    ("selectors_and_ports", "selector matches nothing",
     lambda m: svc(m, "api")["selector"].update({"app.kubernetes.io/component": "apii"})),
    ("selectors_and_ports", "targetPort names no port",
     lambda m: svc(m, "mlflow")["ports"][0].update(targetPort="web")),
    ("selectors_and_ports", "targetPort number no container opens",
     lambda m: svc(m, "api")["ports"][0].update(targetPort=9000)),
    ("selectors_and_ports", "Deployment selector misses its pods",
     lambda m: dep(m, "api")["selector"]["matchLabels"].update({"app.kubernetes.io/name": "x"})),
    ("probes", "readiness on /health",
     lambda m: api(m)["readinessProbe"]["httpGet"].update(path="/health")),
    ("probes", "probe on an unknown port",
     lambda m: mlflow(m)["livenessProbe"]["httpGet"].update(port="metrics")),
    ("probes", "one API replica", lambda m: dep(m, "api").update(replicas=1)),
    ("probes", "API on another port", lambda m: set_arg(api(m), "--port", "8080")),
    ("secret_refs", "key missing", lambda m: m.secret["stringData"].pop("worker-token")),
    ("secret_refs", "another Secret", lambda m: set_env(api(m), "STRSEARCH_DATABASE_URL",
     valueFrom={"secretKeyRef": {"name": "db", "key": "database-url"}})),
    ("secret_refs", "key nobody reads", lambda m: m.secret["stringData"].update(extra="x")),
    ("secret_instructions", "README creates a renamed key", readme_key),
    ("strsearch_env", "misspelt setting",
     lambda m: set_env(api(m), "STRSEARCH_LEASE_SECOND", value="60")),
    ("strsearch_env", "agent given the API's variable", swap_agent_token),
    ("strsearch_env", "no database URL", lambda m: drop_env(api(m), "STRSEARCH_DATABASE_URL")),
    ("agent", "head Service instead of the local raylet",
     lambda m: set_env(agent(m), "RAY_ADDRESS", value="strsearch-ray-head-svc:6379")),
    ("agent", "no shared /tmp/ray", lambda m: agent(m).update(volumeMounts=[
        v for v in agent(m)["volumeMounts"] if v["mountPath"] != RAY_TMP])),
    ("agent", "no shared processes", lambda m: head_pod(m).pop("shareProcessNamespace")),
    ("agent", "agent first", lambda m: head_pod(m)["containers"].reverse()),
    ("agent", "--server on a port the Service lacks",
     lambda m: edit_agent_script(m, "strsearch-api:8000", "strsearch-api:8080")),
    ("agent", "misspelt option", lambda m: edit_agent_script(m, "--storage", "--storag")),
    ("agent", "MLflow URI names no Service",
     lambda m: set_env(agent(m), "MLFLOW_TRACKING_URI", value="http://mlflow:5000")),
    ("mlflow", "allowed hosts without the Service",
     lambda m: set_arg(mlflow(m), "--allowed-hosts", "localhost:*,127.0.0.1:*")),
    ("mlflow", "any host allowed", lambda m: set_arg(mlflow(m), "--allowed-hosts", "*")),
    ("mlflow", "port the container lacks", lambda m: set_arg(mlflow(m), "--port", "5001")),
    ("mlflow", "misspelt option", lambda m: mlflow(m)["args"].__setitem__(2, "--serve-artifact")),
    ("mlflow", "artifacts outside the claim",
     lambda m: set_arg(mlflow(m), "--artifacts-destination", "/var/mlflow")),
    ("ray_auth", "literal token", lambda m: set_env(gpu_worker(m), "RAY_AUTH_TOKEN", value="t")),
    ("ray_auth", "agent without the mode", lambda m: drop_env(agent(m), "RAY_AUTH_MODE")),
    ("ray_auth", "autoscaler without the token",
     lambda m: drop_env(ray_spec(m)["autoscalerOptions"], "RAY_AUTH_TOKEN")),
    ("shared_storage", "claim is ReadWriteOnce",
     lambda m: m.get("PersistentVolumeClaim", "strsearch-shared")["spec"]
     .update(accessModes=["ReadWriteOnce"])),
    ("shared_storage", "mounted elsewhere",
     lambda m: gpu_worker(m)["volumeMounts"][0].update(mountPath="/data")),
    ("shared_storage", "another claim", lambda m: worker_group(m.raycluster, "cpu")["template"]
     ["spec"]["volumes"][0]["persistentVolumeClaim"].update(claimName="other")),
    ("ray_groups", "another Ray", lambda m: ray_spec(m).update(rayVersion="2.59.0")),
    ("ray_groups", "GPU group without GPUs", lambda m: [
        gpu_worker(m)["resources"][side].pop(GPU) for side in ("requests", "limits")]),
    ("ray_groups", "GPU limit without request",
     lambda m: gpu_worker(m)["resources"]["requests"].pop(GPU)),
    ("ray_groups", "GPU group on the CPU image",
     lambda m: gpu_worker(m).update(image=f"strsearch:{image_version()}")),
    ("ray_groups", "GPU group not from zero", lambda m: gpu(m).update(minReplicas=1)),
    ("ray_groups", "no GPU toleration", lambda m: gpu(m)["template"]["spec"].pop("tolerations")),
    ("ray_groups", "replicas above maxReplicas",
     lambda m: worker_group(m.raycluster, "cpu").update(replicas=9)),
    ("ray_groups", "unpinned image", lambda m: api(m).update(image="strsearch:latest")),
    ("not_exposed", "MLflow LoadBalancer", lambda m: svc(m, "mlflow").update(type="LoadBalancer")),
    ("not_exposed", "Ray head NodePort",
     lambda m: ray_spec(m)["headGroupSpec"].update(serviceType="NodePort")),
    ("not_exposed", "workers outside the NetworkPolicy",
     lambda m: m.of_kind("NetworkPolicy")[0]["spec"]["podSelector"]["matchExpressions"][0]
     .update(values=["mlflow", "ray-head"])),
    ("pod_security", "may run as root",
     lambda m: dep(m, "mlflow")["template"]["spec"]["securityContext"].update(runAsNonRoot=False)),
    ("pod_security", "escalation", lambda m: gpu_worker(m)["securityContext"]
     .update(allowPrivilegeEscalation=True)),
    ("pod_security", "no limits", lambda m: agent(m)["resources"].pop("limits")),
    ("pod_security", "not the image's uid",
     lambda m: dep(m, "api")["template"]["spec"]["securityContext"].update(runAsUser=1000)),
    ("pod_security", "root group", lambda m: gpu_worker(m)["securityContext"]
     .update(runAsGroup=0)),
]
# fmt: on


@pytest.mark.parametrize("name", list(CHECKS))
def test_check_passes(name: str, manifests: Manifests) -> None:
    assert CHECKS[name](manifests) == []


@pytest.mark.parametrize(
    ("name", "mutate"),
    [(name, mutate) for name, _, mutate in BREAKAGES],
    ids=[f"{name}: {what}" for name, what, _ in BREAKAGES],
)
def test_check_catches(
    name: str, mutate: Callable[[Manifests], object], manifests: Manifests
) -> None:
    broken = copy.deepcopy(manifests)
    mutate(broken)
    assert CHECKS[name](broken), f"check {name!r} did not notice the breakage"


def test_every_check_has_breakages() -> None:
    """A check that no broken copy makes fail would prove nothing."""
    assert set(CHECKS) == {name for name, _, _ in BREAKAGES}


def test_manifests_are_objects() -> None:
    """Every YAML document of deploy/k8s is an object with apiVersion, kind and a name."""
    objs = load_manifests().objects()
    expected = {
        "Namespace",
        "Secret",
        "PersistentVolumeClaim",
        "Deployment",
        "Service",
        "PodDisruptionBudget",
        "NetworkPolicy",
        "RayCluster",
    }
    assert {o["kind"] for o in objs} == expected
    assert all(o.get("apiVersion") and o["metadata"].get("name") for o in objs)
