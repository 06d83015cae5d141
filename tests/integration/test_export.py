"""`toxiguard export`: a Hugging Face Space that installs and runs on its own, and a bundle that
`toxiguard serve --model-dir` serves without a registry.

Integration tests: a demo champion in a real sqlite registry; the Space installed into a fresh
venv from the package index (`pip install -r requirements.txt`, one venv for the module, about
a minute with a warm pip cache) and driven through `gradio_client`; real `toxiguard serve`
processes.
"""

from __future__ import annotations

import contextlib
import json
import re
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.integration.services import (
    ServerProcessFactory,
    server_environment,
    toxiguard_command,
    train_demo_champion,
)
from tests.processes import free_port, stop_process
from toxiguard.labels import LABELS
from toxiguard.registry.client import load_toxicity_model, resolve_model_uri
from toxiguard.settings import Settings

pytestmark = [pytest.mark.integration, pytest.mark.slow]

COMMENTS = ["Thanks for fixing the references.", "You are a stupid idiot, shut up."]
APP_START_TIMEOUT_S = 120.0
PIP_TIMEOUT_S = 900.0


@dataclass(frozen=True)
class Champion:
    """A home with a demo champion, and the environment that points commands at it."""

    home: Path
    settings: Settings
    env: dict[str, str]


def _cli(env: dict[str, str], *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """Return the finished `toxiguard ARGS` process (output captured)."""
    return subprocess.run(
        toxiguard_command(*args),
        check=False,
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.fixture(scope="module")
def champion(tmp_path_factory: pytest.TempPathFactory) -> Champion:
    """Return a home whose registry holds a demo champion (version 1)."""
    home = tmp_path_factory.mktemp("export-home")
    settings = train_demo_champion(home)
    env = server_environment(home, {"MLFLOW_TRACKING_URI": settings.tracking_uri})
    return Champion(home, settings, env)


@pytest.fixture(scope="module")
def space(champion: Champion, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Return the directory `toxiguard export space` wrote for the champion."""
    target = tmp_path_factory.mktemp("space-parent") / "space"
    done = _cli(champion.env, "export", "space", str(target), cwd=champion.home)
    assert done.returncode == 0, done.stderr
    return target


def install_space(space: Path, venv: Path) -> Path:
    """Return the python of a fresh venv at `venv` (outside the repository) with the Space's
    requirements.txt installed, as a Space's build installs them."""
    started = time.monotonic()
    subprocess.run(["python3.11", "-m", "venv", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    done = subprocess.run(
        [str(python), "-m", "pip", "install", "-q", "-r", "requirements.txt"],
        check=False,
        cwd=space,
        capture_output=True,
        text=True,
        timeout=PIP_TIMEOUT_S,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    print(f"fresh venv with the Space's requirements: {time.monotonic() - started:.0f} s")
    return python


@contextlib.contextmanager
def running_space(space: Path, python: Path) -> Iterator[str]:
    """Yield the URL of the Space's `python app.py`, run from `python`'s venv; stop it after."""
    port = free_port()
    env = {
        "PATH": "/usr/bin:/bin",
        "HOME": str(space.parent),
        "GRADIO_SERVER_PORT": str(port),
        "GRADIO_SERVER_NAME": "127.0.0.1",
        "GRADIO_ANALYTICS_ENABLED": "False",
        "HF_HUB_OFFLINE": "1",
    }
    log = space.parent / "app.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [str(python), "app.py"],
            cwd=space,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    url = f"http://127.0.0.1:{port}/"
    try:
        deadline = time.monotonic() + APP_START_TIMEOUT_S
        while True:
            try:
                if httpx.get(url, timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"python app.py did not come up:\n{log.read_text()[-4000:]}")
            time.sleep(0.5)
        yield url
    finally:
        stop_process(process)


@pytest.fixture(scope="module")
def space_python(space: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Return the python of a fresh venv with the Space's requirements installed."""
    return install_space(space, tmp_path_factory.mktemp("space-venv") / "venv")


@pytest.fixture(scope="module")
def space_url(space: Path, space_python: Path) -> Iterator[str]:
    """Return the URL of the Space's `python app.py`, running from the fresh venv."""
    with running_space(space, space_python) as url:
        yield url


def _registry_scores(champion: Champion, texts: list[str]) -> list[list[float]]:
    """Return the registry champion's probabilities for the texts (the package's predict_proba)."""
    package, _ = load_toxicity_model(resolve_model_uri(None, champion.settings), champion.settings)
    return [[float(p) for p in row] for row in package.predict_proba(texts)]


# ---------------------------------------------------------------- the Space
def test_space_layout_pins_and_model_card(space: Path) -> None:
    """The Space has the files Spaces expect, every requirement pinned, no MLflow or torch, and
    a README whose front matter and model card name the version's test metrics and data."""
    assert {"app.py", "requirements.txt", "README.md", "model", "toxiguard"} <= {
        p.name for p in space.iterdir()
    }
    requirements = (space / "requirements.txt").read_text().split()
    assert all(re.fullmatch(r"[A-Za-z0-9_.-]+==[0-9][\w.]*", line) for line in requirements)
    names = {line.split("==")[0].lower() for line in requirements}
    assert "gradio" in names and not names & {"mlflow", "torch", "toxiguard"}
    readme = (space / "README.md").read_text()
    front = readme.split("---")[1]
    import gradio

    for line in ("sdk: gradio", f"sdk_version: {gradio.__version__}", "app_file: app.py"):
        key, value = line.split(": ")
        assert re.search(rf'^{key}: "?{re.escape(value)}"?$', front, re.MULTILINE), front
    assert re.search(r"^license: ", front, re.MULTILINE)
    bundle = json.loads((space / "model" / "bundle.json").read_text())
    mean = bundle["metrics"]["test_roc_auc_mean"]
    assert f"**{mean:.4f}**" in readme
    for label in LABELS:
        assert f"| {label} | {bundle['metrics'][f'test_roc_auc_{label}']:.4f} |" in readme
    assert "demo.csv.gz" in readme and "demo corpus" in readme
    # The model card carries the version's audit: its headline and one row per obfuscation.
    assert "## Bias and robustness" in readme and "final bias score" in readme
    assert all(f"| {name} | " in readme for name in bundle_audit_perturbations(space))


def bundle_audit_perturbations(space: Path) -> list[str]:
    """Return the obfuscations of the audit saved with the Space's model."""
    audit = json.loads((space / "model" / "audit.json").read_text())
    return list(audit["robustness"]["perturbed"])


def test_space_runs_from_a_fresh_venv_without_mlflow_or_torch(
    champion: Champion, space: Path, space_python: Path, space_url: str
) -> None:
    """The app answers through gradio_client with the registry model's probabilities (within
    1e-6, as `toxiguard predict` gives them), the same bars and flags as the UI's Comment tab,
    and its venv has neither MLflow nor torch; loading the app imports neither."""
    from gradio_client import Client

    client = Client(space_url, verbose=False)
    expected = _registry_scores(champion, COMMENTS)
    printed = _cli(champion.env, "predict", "--json", *COMMENTS, cwd=champion.home)
    assert printed.returncode == 0, printed.stderr
    predicted = json.loads(printed.stdout)["predictions"]
    for text, scores, cli in zip(COMMENTS, expected, predicted, strict=True):
        answer = client.predict(text, api_name="/predict")
        got = [answer["scores"][label] for label in LABELS]
        assert got == pytest.approx(scores, abs=1e-6)
        assert got == pytest.approx([cli["scores"][label] for label in LABELS], abs=1e-6)
        assert answer["flagged"] == cli["flagged"]
        html = client.predict(text, api_name="/score")
        bars = dict(re.findall(r'data-label="(\w+)" data-score="([0-9.]+)"', html))
        assert [float(bars[label]) for label in LABELS] == pytest.approx(scores, abs=1e-6)
        flagged = re.findall(r'data-label="(\w+)"[^>]*data-flagged="true"', html)
        assert flagged == cli["flagged"]
        assert "tg-why" in html  # the words behind the labels
    for missing in ("mlflow", "torch"):
        shown = subprocess.run(
            [str(space_python), "-m", "pip", "show", missing],
            check=False,
            capture_output=True,
            timeout=120,
        )
        assert shown.returncode != 0, f"{missing} is installed in the Space's venv"
    check = (
        "import sys; from pathlib import Path; from toxiguard.serving.export import space_app; "
        "space_app(Path('.')); "
        "bad = [m for m in ('mlflow', 'torch', 'fastapi_offline') if m in sys.modules]; "
        "assert not bad, bad"
    )
    done = subprocess.run(
        [str(space_python), "-c", check],
        check=False,
        cwd=space,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-2000:]


# ---------------------------------------------------------------- the bundle
def test_bundle_served_without_a_registry(
    champion: Champion, tmp_path: Path, serve_factory: ServerProcessFactory
) -> None:
    """`toxiguard serve --model-dir` on a home without any registry answers /v1/predict as the
    registry's model does, and /ready and /v1/model say it serves the bundle."""
    bundle = tmp_path / "bundle"
    done = _cli(champion.env, "export", "bundle", str(bundle), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    empty_home = tmp_path / "no-registry-home"
    server = serve_factory(empty_home, {"TOXIGUARD_MODEL_DIR": str(bundle)})
    ready = httpx.get(f"{server.url}/ready", timeout=10)
    assert ready.status_code == 200, ready.text
    body = ready.json()
    assert body["status"] == "ready", body
    assert body["registry"]["serving"] == f"serving bundle {bundle} version 1"
    model = httpx.get(f"{server.url}/v1/model", timeout=10).json()
    assert (model["version"], model["source"], model["uri"]) == (1, "bundle", str(bundle))
    assert model["metrics"]["test_roc_auc_mean"] > 0
    answer = httpx.post(f"{server.url}/v1/predict", json={"texts": COMMENTS}, timeout=30)
    assert answer.status_code == 200, answer.text
    got = [[p["scores"][label] for label in LABELS] for p in answer.json()["predictions"]]
    for row, expected in zip(got, _registry_scores(champion, COMMENTS), strict=True):
        assert row == pytest.approx(expected, abs=1e-12)
    assert not (empty_home / "mlflow.db").exists()


def test_tampered_bundle_is_refused(champion: Champion, tmp_path: Path) -> None:
    """A bundle with a changed model file is refused at start: one `error:` line, exit 2."""
    bundle = tmp_path / "bundle"
    assert _cli(champion.env, "export", "bundle", str(bundle), cwd=tmp_path).returncode == 0
    pickle = next(p for p in bundle.iterdir() if p.suffix == ".joblib")
    pickle.write_bytes(pickle.read_bytes() + b"\0")
    env = server_environment(tmp_path / "home")
    done = _cli(env, "serve", "--port", str(free_port()), "--model-dir", str(bundle), cwd=tmp_path)
    assert done.returncode == 2, done.stdout + done.stderr
    errors = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(errors) == 1 and errors[0].startswith("error:"), done.stderr
    assert pickle.name in errors[0] and "Traceback" not in done.stderr


@pytest.mark.parametrize("case", ["no registry", "no such version"])
def test_export_without_a_model_is_one_error_line(
    champion: Champion, tmp_path: Path, case: str
) -> None:
    """Exporting when there is no model to export is one `error:` line, exit 2, nothing written."""
    if case == "no registry":
        env, extra = server_environment(tmp_path / "empty-home"), []
    else:
        env, extra = champion.env, ["--model", "99"]
    target = tmp_path / "out"
    done = _cli(env, "export", "bundle", str(target), *extra, cwd=tmp_path)
    assert done.returncode == 2, done.stdout + done.stderr
    errors = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(errors) == 1 and errors[0].startswith("error:"), done.stderr
    assert not target.exists()


def test_export_refuses_a_directory_in_use(champion: Champion, tmp_path: Path) -> None:
    """A non-empty target directory is refused, and left as it was."""
    (tmp_path / "keep.txt").write_text("mine")
    done = _cli(champion.env, "export", "space", str(tmp_path), cwd=tmp_path)
    assert done.returncode == 2 and done.stderr.startswith("error:"), done.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep.txt"]
