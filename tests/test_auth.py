"""A secured tracking server (`mlflow server --app-name basic-auth`, default permission READ): every command
works for a user allowed to write, no password is stored, logged or printed anywhere, and a read-only user or
a wrong password fails in one line (exit 2) without leaving a run behind.

One server for the module. Order matters: `written` runs the writer's commands once (train, noise-eval,
report, study, study on Ray); the read-only and wrong-password checks use its training run; the leak checks
come last and read everything the commands left (stores, artifacts, outputs, params, tags).
"""
import base64
import dataclasses
import importlib.util
import os
import re
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from mlflow.entities import ViewType
from mlflow.server import get_app_client
from mlflow.tracking import MlflowClient

from lrnoise import report, server, tracking

pytestmark = pytest.mark.e2e

if importlib.util.find_spec("flask_wtf") is None:  # mlflow[auth]: the basic-auth app needs Flask-WTF
    pytest.skip("mlflow[auth] is not installed (pip install 'mlflow[auth]')", allow_module_level=True)

HAS_RAY = importlib.util.find_spec("ray") is not None
EXPERIMENT = tracking.DEFAULT_EXPERIMENT
REGISTERED_MODEL = "lrnoise-digits-resnet20"  # what `lrnoise train --dataset digits` registers
STUDY_ARGS = ("study", "--models", "resnet20", "--optimizers", "adam", "--lrs", "0.001,0.002", "--epochs", "1",
              "--seeds", "0", "--trials", "1", "--noise", "additive", "--batch-size", "128", "--patience", "10",
              "--workers", "2", "--no-report")  # train's --patience and noise-eval's levels: lr 0.001 reuses both of their runs
WRITER_COMMANDS = ("train", "noise-eval", "report", "study", "study-ray")
DENIED_COMMANDS = ("train", "noise-eval", "study")
WRONG_PASSWORD_COMMANDS = ("train", "noise-eval", "report")  # study: the same first request as train


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
    path.write_text("[mlflow]\n"
                    "default_permission = READ\n"
                    f"database_uri = sqlite:///{root / 'auth.db'}\n"
                    "admin_username = admin\n"
                    "authorization_function = mlflow.server.auth:authenticate_request_basic_auth\n")
    return path


def admin_client(secured: Secured) -> MlflowClient:
    """Credentials come from MLFLOW_TRACKING_USERNAME / PASSWORD, the admin's in this process (see `secured`)."""
    return MlflowClient(tracking_uri=secured.uri, registry_uri=secured.uri)


@pytest.fixture(scope="module")
def secured(tmp_path_factory):
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
        with server.serve(f"sqlite:///{root / 'mlflow.db'}",
                            extra_args=("--app-name", "basic-auth", "--artifacts-destination",
                                        str(root / "artifacts"))) as uri:
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
            yield state
    finally:
        client_env.undo()
        server_env.undo()


def lrnoise(secured: Secured, user: User, *args, extra_env: dict | None = None, timeout: float = 600):
    """`python -m lrnoise.cli ARGS` as `user` (credentials in the environment only); the output is kept for
    the leak checks."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_TRACKING_", "MLFLOW_AUTH_"))
           and k not in ("MLFLOW_RUN_ID", "MLFLOW_REGISTRY_URI")}
    env.update(MLFLOW_TRACKING_URI=secured.uri, MLFLOW_TRACKING_USERNAME=user.name,
               MLFLOW_TRACKING_PASSWORD=user.password, MLFLOW_DISABLE_TELEMETRY="true", **(extra_env or {}))
    started = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "lrnoise.cli", *args], capture_output=True, text=True,
                          env=env, cwd=secured.root / "work", timeout=timeout)
    label = f"{user.name}: lrnoise {' '.join(args)}"
    secured.seconds[label] = time.perf_counter() - started
    print(f"[{secured.seconds[label]:.0f}s, exit {proc.returncode}] {label}")
    secured.outputs.append((label, proc.stdout + proc.stderr))
    return proc


def run_id_printed(proc) -> str | None:
    """The id from the 'run_id <id>' line train / noise-eval print last."""
    ids = re.findall(r"^run_id (\w+)$", proc.stdout, re.M)
    return ids[-1] if ids else None


@pytest.fixture(scope="module")
def written(secured):
    """The writer's commands, each once, in order: {name: CompletedProcess}, and the training run's id."""
    done = {"train": lrnoise(secured, secured.writer, "train", "--dataset", "digits", "--epochs", "1",
                             "--batch-size", "128")}
    train_run_id = run_id_printed(done["train"])
    if train_run_id:  # the paper's six etas: `report` moves the `noise-robust` alias for them; digits is small
        done["noise-eval"] = lrnoise(secured, secured.writer, "noise-eval", "--run-id", train_run_id,
                                     "--trials", "1")
    done["report"] = lrnoise(secured, secured.writer, "report", "--out", str(secured.root / "report"))
    done["study"] = lrnoise(secured, secured.writer, *STUDY_ARGS)
    if HAS_RAY:  # short: Ray's socket paths must stay under ~107 characters
        ray_dir = tempfile.mkdtemp(prefix="lrnoise-ray-", dir="/tmp")
        secured.ray_dirs.append(Path(ray_dir))
        done["study-ray"] = lrnoise(secured, secured.writer, *STUDY_ARGS, "--executor", "ray",
                                    extra_env={"RAY_TMPDIR": ray_dir})
    yield done, train_run_id
    for folder in secured.ray_dirs:  # outside tmp_path: removed here
        shutil.rmtree(folder, ignore_errors=True)


def runs_by_id(secured: Secured) -> dict:
    """{run_id: status} of every run on the server (every experiment, deleted ones too), read as the admin."""
    client = admin_client(secured)
    experiments = [e.experiment_id for e in client.search_experiments(view_type=ViewType.ALL)]
    runs = client.search_runs(experiments, run_view_type=ViewType.ALL, max_results=5000)
    return {r.info.run_id: r.info.status for r in runs}


# TensorFlow 2.21's C++ start-up log (absl, before InitializeLog; TF_CPP_MIN_LOG_LEVEL does not silence it):
# "WARNING: All log messages before absl::InitializeLog() ...", "I0000 00:00:17.. 23601 port.cc:153] ..."
TF_NATIVE_LOG = re.compile(r"^(WARNING: All log messages before absl::InitializeLog\(\)"
                           r"|[IWEF]\d{4} [\d:.]+ +\d+ \S+:\d+\])")


def error_lines(proc) -> list[str]:
    """lrnoise's stderr lines: TensorFlow's native start-up log left out (it is not lrnoise's to silence)."""
    return [line for line in proc.stderr.splitlines() if line.strip() and not TF_NATIVE_LOG.match(line)]


def _tail(proc) -> str:
    return f"exit {proc.returncode}\nstdout: ...{proc.stdout[-1500:]}\nstderr: ...{proc.stderr[-3000:]}"


# ---------------------------------------------------------------- a user allowed to write
@pytest.mark.parametrize("name", WRITER_COMMANDS)
def test_writer_command_succeeds(written, name):
    if name == "study-ray" and not HAS_RAY:
        pytest.skip("ray is not installed")
    done, _ = written
    assert name in done, "not run: `lrnoise train` printed no run id"
    assert done[name].returncode == 0, _tail(done[name])


def test_writer_runs_finished_and_report_moved_the_alias(secured, written):
    _, train_run_id = written
    statuses = runs_by_id(secured)
    assert statuses and "RUNNING" not in statuses.values(), statuses
    version = admin_client(secured).get_model_version_by_alias(REGISTERED_MODEL, report.SWEET_SPOT_ALIAS)
    assert statuses[version.run_id] == "FINISHED"
    assert train_run_id and (secured.root / "report" / "table2_baseline_accuracy.md").is_file()


# ---------------------------------------------------------------- a user who may only read
def _denied_args(name: str, train_run_id: str) -> tuple:
    return {"train": ("train", "--dataset", "digits", "--epochs", "1", "--batch-size", "128"),
            "noise-eval": ("noise-eval", "--run-id", train_run_id, "--levels", "0.1", "--trials", "1"),
            "study": STUDY_ARGS}[name]


@pytest.mark.parametrize("name", DENIED_COMMANDS)
def test_read_only_user_is_refused_in_one_line_and_leaves_no_run(secured, written, name):
    _, train_run_id = written
    assert train_run_id, "the writer's training run is missing"
    before = runs_by_id(secured)
    proc = lrnoise(secured, secured.reader, *_denied_args(name, train_run_id))
    after = runs_by_id(secured)
    new = {run_id: status for run_id, status in after.items() if run_id not in before}
    assert "RUNNING" not in new.values(), f"left RUNNING: {new}"
    assert not new, f"runs created although writing is refused: {new}"
    assert proc.returncode == 2, _tail(proc)
    lines = error_lines(proc)
    assert len(lines) == 1, _tail(proc)
    assert re.search(r"permission[ _]denied", lines[0], re.I) and secured.uri in lines[0], lines[0]


@pytest.mark.parametrize("name", WRONG_PASSWORD_COMMANDS)
def test_wrong_password_fails_in_one_line(secured, written, name):
    _, train_run_id = written
    assert train_run_id, "the writer's training run is missing"
    args = ("report", "--out", str(secured.root / "never")) if name == "report" else _denied_args(name, train_run_id)
    before = runs_by_id(secured)
    proc = lrnoise(secured, secured.wrong, *args)
    assert runs_by_id(secured) == before
    assert proc.returncode == 2, _tail(proc)
    lines = error_lines(proc)
    assert len(lines) == 1, _tail(proc)
    assert re.search(r"authenticat|401", lines[0], re.I) and secured.uri in lines[0], lines[0]


# ---------------------------------------------------------------- credentials leak nowhere (last: reads all above)
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
        for run in client.search_runs([e.experiment_id for e in experiments], run_view_type=ViewType.ALL,
                                      max_results=5000):
            texts += [(f"run {run.info.run_id} params", repr(run.data.params)),
                      (f"run {run.info.run_id} tags", repr(run.data.tags)),
                      (f"run {run.info.run_id} info", repr(run.info))]
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


LEAK_PLACES = ("server store", "auth store", "artifacts", "command output", "experiments, runs: params and tags",
               "registry and logged models", "ray session files")


@pytest.mark.parametrize("where", LEAK_PLACES)
def test_no_credentials_in(secured, written, where):
    if where == "ray session files" and not secured.ray_dirs:
        pytest.skip("ray is not installed")
    contents = _stored(secured, where)
    assert contents and any(contents.values()), f"nothing found to search in {where}"
    leaks = [f"{what} in {label}" for label, content in contents.items()
             for what, secret in secured.secrets().items() if secret.encode() in content]
    assert not leaks, leaks


def test_no_param_or_tag_names_a_credential(secured, written):
    """`mlflow run`-style params (an entry point's inputs) and tags: none carries a credential by name."""
    client = admin_client(secured)
    experiments = [e.experiment_id for e in client.search_experiments(view_type=ViewType.ALL)]
    runs = client.search_runs(experiments, run_view_type=ViewType.ALL, max_results=5000)
    keys = {key for run in runs for key in (*run.data.params, *run.data.tags)}
    assert runs and keys
    assert not [k for k in keys if re.search(r"password|token|secret|username|credential", k, re.I)], sorted(keys)
