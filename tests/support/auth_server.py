"""A secured tracking server for the access tests (test_auth.py, test_auth_study.py): `mlflow server --app-name
basic-auth` with default permission READ on a free 127.0.0.1 port, its users, the `lrnoise` command run as one of
them, and the places a credential could leak into.

The models are ResNet8s without the gradient-noise measurement: what is tested is access, not training.
"""

import base64
import contextlib
import dataclasses
import importlib.util
import os
import re
import secrets
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from mlflow.entities import ViewType
from mlflow.server import get_app_client
from mlflow.tracking import MlflowClient
from werkzeug.security import generate_password_hash

from lrnoise import names
from lrnoise.store import server

from support.stores import new_store

HAS_RAY = importlib.util.find_spec("ray") is not None
EXPERIMENT = names.DEFAULT_EXPERIMENT
REGISTERED_MODEL = "lrnoise-digits-resnet8"  # what TRAIN_ARGS register
TRAIN_ARGS = (
    "train",
    "--dataset",
    "digits",
    "--model",
    "resnet8",
    "--epochs",
    "1",
    "--batch-size",
    "128",
    "--grad-noise-batches",
    "0",
)
STUDY_ARGS = (
    "study",
    "--models",
    "resnet8",
    "--optimizers",
    "adam",
    "--lrs",
    "0.001,0.002",
    "--epochs",
    "1",
    "--seeds",
    "0",
    "--trials",
    "1",
    "--noise",
    "additive",
    "--batch-size",
    "128",
    "--patience",
    "10",
    "--grad-noise-batches",
    "0",
    "--workers",
    "2",
    "--no-report",
)  # lr 0.001 reuses TRAIN_ARGS' runs


@dataclasses.dataclass(frozen=True)
class User:
    name: str
    password: str

    def basic_header(self) -> str:
        """What the client sends (Authorization: Basic <this>): a leaked header is a leaked password."""
        return base64.b64encode(f"{self.name}:{self.password}".encode()).decode()


@dataclasses.dataclass
class Secured:
    uri: str
    root: Path  # tmp folder: stores, artifacts, the commands' working folder
    admin: User
    writer: User
    reader: User
    wrong: User  # the writer's name with a password the server never saw
    outputs: list = dataclasses.field(default_factory=list)  # (what ran, stdout + stderr) of every command
    seconds: dict = dataclasses.field(default_factory=dict)  # what ran -> wall seconds (shown with -s)
    ray_dirs: list = dataclasses.field(default_factory=list)  # RAY_TMPDIR of each Ray study

    @property
    def artifacts(self) -> Path:
        return self.root / "artifacts"

    def secrets(self) -> dict[str, str]:
        """{what: text that must appear nowhere}: every password and every Authorization header value."""
        found = {}
        for user in (self.admin, self.writer, self.reader, self.wrong):
            found[f"{user.name} password"] = user.password
            found[f"{user.name} Basic header"] = user.basic_header()
        return found


def _password(role: str) -> str:
    return f"s3cr3t-pw-{role}-{secrets.token_hex(8)}"  # >= 12 characters: the auth store's password policy


def _auth_ini(root: Path) -> Path:
    """basic_auth.ini: the admin's password comes from MLFLOW_AUTH_ADMIN_PASSWORD, never from a file."""
    path = root / "basic_auth.ini"
    path.write_text(
        "[mlflow]\n"
        "default_permission = READ\n"
        f"database_uri = sqlite:///{root / 'auth.db'}\n"
        "admin_username = admin\n"
        "authorization_function = mlflow.server.auth:authenticate_request_basic_auth\n"
    )
    return path


def cheap_password_checks(auth_db: Path, users) -> None:
    """Stores each user's password hash with one PBKDF2 round. The server checks the password on every request,
    and MLflow's default (scrypt) costs ~90 ms a check, hundreds of times per command; what these tests check is
    who may do what and that no password leaks, not the hash's strength (as Django's tests use a fast hasher)."""
    with contextlib.closing(sqlite3.connect(auth_db)) as db, db:
        for user in users:
            db.execute(
                "UPDATE users SET password_hash = ? WHERE username = ?",
                (generate_password_hash(user.password, method="pbkdf2:sha256:1"), user.name),
            )


def admin_client(secured: Secured) -> MlflowClient:
    """Credentials come from MLFLOW_TRACKING_USERNAME / PASSWORD, the admin's in this process (see `secured`)."""
    return MlflowClient(tracking_uri=secured.uri, registry_uri=secured.uri)


@pytest.fixture(scope="module")
def secured(tmp_path_factory, migrated_store):
    """`mlflow server --app-name basic-auth` on a free 127.0.0.1 port: sqlite stores and an artifacts destination
    in tmp; the experiment exists (made by the admin), `writer` may MANAGE it, `reader` only has the default READ."""
    root = tmp_path_factory.mktemp("auth")
    (root / "work").mkdir()
    users = {role: User(role, _password(role)) for role in ("admin", "writer", "reader")}
    wrong = User("writer", _password("wrong"))
    server_env = pytest.MonkeyPatch()
    server_env.setenv("MLFLOW_AUTH_CONFIG_PATH", str(_auth_ini(root)))
    server_env.setenv("MLFLOW_AUTH_ADMIN_PASSWORD", users["admin"].password)
    server_env.setenv("MLFLOW_FLASK_SERVER_SECRET_KEY", secrets.token_hex(16))
    client_env = pytest.MonkeyPatch()
    try:
        with server.serve(
            new_store(migrated_store, root / "mlflow.db"),
            extra_args=("--app-name", "basic-auth", "--artifacts-destination", str(root / "artifacts")),
        ) as uri:
            server_env.undo()  # the server has them; no client process inherits the admin's bootstrap password
            client_env.setenv("MLFLOW_TRACKING_USERNAME", "admin")
            client_env.setenv("MLFLOW_TRACKING_PASSWORD", users["admin"].password)
            client_env.delenv("MLFLOW_RUN_ID", raising=False)
            state = Secured(uri, root, users["admin"], users["writer"], users["reader"], wrong)
            experiment_id = admin_client(state).create_experiment(EXPERIMENT)
            auth = get_app_client("basic-auth", tracking_uri=uri)
            for role in ("writer", "reader"):
                auth.create_user(role, users[role].password)
            auth.grant_user_permission("writer", "experiment", experiment_id, "MANAGE")
            cheap_password_checks(root / "auth.db", users.values())
            yield state
    finally:
        client_env.undo()
        server_env.undo()


def lrnoise(secured: Secured, user: User, *args, extra_env: dict | None = None, timeout: float = 600):
    """`python -m lrnoise.cli ARGS` as `user` (credentials in the environment only); the output is kept for
    the leak checks."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("MLFLOW_TRACKING_", "MLFLOW_AUTH_")) and k not in ("MLFLOW_RUN_ID", "MLFLOW_REGISTRY_URI")
    }
    env.update(
        MLFLOW_TRACKING_URI=secured.uri,
        MLFLOW_TRACKING_USERNAME=user.name,
        MLFLOW_TRACKING_PASSWORD=user.password,
        MLFLOW_DISABLE_TELEMETRY="true",
        **(extra_env or {}),
    )
    started = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "lrnoise.cli", *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=secured.root / "work",
        timeout=timeout,
    )
    label = f"{user.name}: lrnoise {' '.join(args)}"
    secured.seconds[label] = time.perf_counter() - started
    print(f"[{secured.seconds[label]:.0f}s, exit {proc.returncode}] {label}")
    secured.outputs.append((label, proc.stdout + proc.stderr))
    return proc


def run_id_printed(proc) -> str | None:
    """The id from the 'run_id <id>' line train / noise-eval print last."""
    ids = re.findall(r"^run_id (\w+)$", proc.stdout, re.M)
    return ids[-1] if ids else None


@dataclasses.dataclass
class Refused:
    """A command of a user who may not write: what it printed and the runs it created (run id -> status)."""

    proc: subprocess.CompletedProcess
    new_runs: dict


def refused(secured: Secured, user: User, *args) -> Refused:
    before = runs_by_id(secured)
    proc = lrnoise(secured, user, *args)
    return Refused(proc, {run_id: status for run_id, status in runs_by_id(secured).items() if run_id not in before})


def runs_by_id(secured: Secured) -> dict:
    """{run_id: status} of every run on the server (every experiment, deleted ones too), read as the admin."""
    client = admin_client(secured)
    experiments = [e.experiment_id for e in client.search_experiments(view_type=ViewType.ALL)]
    runs = client.search_runs(experiments, run_view_type=ViewType.ALL, max_results=5000)
    return {r.info.run_id: r.info.status for r in runs}


# TensorFlow 2.21's C++ start-up log (absl, before InitializeLog; TF_CPP_MIN_LOG_LEVEL does not silence it):
# "WARNING: All log messages before absl::InitializeLog() ...", "I0000 00:00:17.. 23601 port.cc:153] ..."
TF_NATIVE_LOG = re.compile(
    r"^(WARNING: All log messages before absl::InitializeLog\(\)"
    r"|[IWEF]\d{4} [\d:.]+ +\d+ \S+:\d+\])"
)


def error_lines(proc) -> list[str]:
    """lrnoise's stderr lines: TensorFlow's native start-up log left out (it is not lrnoise's to silence)."""
    return [line for line in proc.stderr.splitlines() if line.strip() and not TF_NATIVE_LOG.match(line)]


def tail(proc) -> str:
    return f"exit {proc.returncode}\nstdout: ...{proc.stdout[-1500:]}\nstderr: ...{proc.stderr[-3000:]}"


def denied_args(name: str, train_run_id: str) -> tuple:
    return {
        "train": TRAIN_ARGS,
        "noise-eval": ("noise-eval", "--run-id", train_run_id, "--levels", "0.1", "--trials", "1"),
        "study": STUDY_ARGS,
    }[name]


def _files(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if p.is_file()]


def _stored(secured: Secured, where: str) -> dict[str, bytes]:
    """{label: content} of one place the commands could have written credentials into."""
    if where == "server store":
        paths = sorted(secured.root.glob("mlflow.db*"))  # the database and any -wal / -journal beside it
    elif where == "auth store":
        paths = sorted(secured.root.glob("auth.db*"))
    elif where == "artifacts":
        paths = _files(secured.artifacts)
    elif where == "ray session files":
        paths = [p for folder in secured.ray_dirs for p in _files(folder)]
    else:
        return {label: text.encode() for label, text in _api_texts(secured, where)}
    contents = {}
    for path in paths:
        with open(path, "rb") as f:
            contents[str(path)] = f.read()
    return contents


def _api_texts(secured: Secured, where: str) -> list[tuple[str, str]]:
    """(label, text) of the commands' outputs, or of what the server returns about runs and models."""
    if where == "command output":
        return list(secured.outputs)
    client = admin_client(secured)
    experiments = client.search_experiments(view_type=ViewType.ALL)
    if where == "experiments, runs: params and tags":
        texts = [(f"experiment {e.name}", repr(e.tags)) for e in experiments]
        for run in client.search_runs(
            [e.experiment_id for e in experiments], run_view_type=ViewType.ALL, max_results=5000
        ):
            texts += [
                (f"run {run.info.run_id} params", repr(run.data.params)),
                (f"run {run.info.run_id} tags", repr(run.data.tags)),
                (f"run {run.info.run_id} info", repr(run.info)),
            ]
        return texts
    assert where == "registry and logged models"
    texts = []
    for model in client.search_registered_models():
        texts.append((f"model {model.name}", repr((model.tags, model.aliases, model.description))))
        for version in client.search_model_versions(f"name = '{model.name}'"):
            texts.append((f"model {model.name} v{version.version}", repr((version.tags, version.source))))
    for logged in client.search_logged_models([e.experiment_id for e in experiments]):
        texts.append((f"logged model {logged.model_id}", repr((logged.params, logged.tags))))
    return texts


LEAK_PLACES = (
    "server store",
    "auth store",
    "artifacts",
    "command output",
    "experiments, runs: params and tags",
    "registry and logged models",
    "ray session files",
)


def credential_leaks(secured: Secured, where: str) -> list[str]:
    """'<which secret> in <where exactly>' for every password or Authorization header value found in `where`."""
    contents = _stored(secured, where)
    assert contents and any(contents.values()), f"nothing found to search in {where}"
    return [
        f"{what} in {label}"
        for label, content in contents.items()
        for what, secret in secured.secrets().items()
        if secret.encode() in content
    ]


def credential_keys(secured: Secured) -> list[str]:
    """The param and tag names on the server that name a credential (`mlflow run`-style inputs and tags)."""
    client = admin_client(secured)
    experiments = [e.experiment_id for e in client.search_experiments(view_type=ViewType.ALL)]
    runs = client.search_runs(experiments, run_view_type=ViewType.ALL, max_results=5000)
    keys = {key for run in runs for key in (*run.data.params, *run.data.tags)}
    assert runs and keys
    return sorted(k for k in keys if re.search(r"password|token|secret|username|credential", k, re.I))
