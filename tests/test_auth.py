"""A secured tracking server (`mlflow server --app-name basic-auth`, default permission READ): train, noise-eval
and report work for a user allowed to write, no password is stored, logged or printed anywhere, and a read-only
user or a wrong password fails in one line (exit 2) without leaving a run behind. (Studies: test_auth_study.py.)

One server for the module, and one module fixture, `ran`, that runs every command once: the writer's, then the
read-only user's and the wrong password's on the writer's training run, each between two reads of the server's
runs. The tests only read what `ran` recorded, so they pass in any order.
"""

import dataclasses
import importlib.util
import re

import pytest

pytestmark = pytest.mark.e2e

if importlib.util.find_spec("flask_wtf") is None:  # mlflow[auth]: the basic-auth app needs Flask-WTF
    pytest.skip("mlflow[auth] is not installed (pip install 'mlflow[auth]')", allow_module_level=True)

from lrnoise.report import aliases  # noqa: E402

from support.auth_server import (  # noqa: E402
    LEAK_PLACES,
    REGISTERED_MODEL,
    TRAIN_ARGS,
    Refused,
    admin_client,
    credential_keys,
    credential_leaks,
    denied_args,
    error_lines,
    lrnoise,
    refused,
    run_id_printed,
    runs_by_id,
    tail,
)

WRITER_COMMANDS = ("train", "noise-eval", "report")
DENIED_COMMANDS = ("train", "noise-eval")  # study: test_auth_study.py
WRONG_PASSWORD_COMMANDS = ("train", "noise-eval", "report")  # study: the same first request as train


@dataclasses.dataclass
class Ran:
    done: dict  # the writer's commands: name -> CompletedProcess
    train_run_id: str | None
    denied: dict  # the read-only user's commands: name -> Refused
    wrong_password: dict  # the wrong password's commands: name -> Refused


@pytest.fixture(scope="module")
def ran(secured) -> Ran:
    """Every command once, the writer's first (the others need its training run)."""
    done = {"train": lrnoise(secured, secured.writer, *TRAIN_ARGS)}
    train_run_id = run_id_printed(done["train"])
    if train_run_id:  # the paper's six etas: `report` moves the `noise-robust` alias for them; digits is small
        done["noise-eval"] = lrnoise(secured, secured.writer, "noise-eval", "--run-id", train_run_id, "--trials", "1")
    done["report"] = lrnoise(secured, secured.writer, "report", "--out", str(secured.root / "report"))
    denied: dict[str, Refused] = {}
    wrong: dict[str, Refused] = {}
    if train_run_id:
        for name in DENIED_COMMANDS:
            denied[name] = refused(secured, secured.reader, *denied_args(name, train_run_id))
        for name in WRONG_PASSWORD_COMMANDS:
            args = (
                ("report", "--out", str(secured.root / "never"))
                if name == "report"
                else denied_args(name, train_run_id)
            )
            wrong[name] = refused(secured, secured.wrong, *args)
    return Ran(done, train_run_id, denied, wrong)


# ---------------------------------------------------------------- a user allowed to write
@pytest.mark.parametrize("name", WRITER_COMMANDS)
def test_writer_command_succeeds(ran, name):
    assert name in ran.done, "not run: `lrnoise train` printed no run id"
    assert ran.done[name].returncode == 0, tail(ran.done[name])


def test_writer_runs_finished_and_report_moved_the_alias(secured, ran):
    statuses = runs_by_id(secured)
    assert statuses and "RUNNING" not in statuses.values(), statuses
    version = admin_client(secured).get_model_version_by_alias(REGISTERED_MODEL, aliases.SWEET_SPOT_ALIAS)
    assert statuses[version.run_id] == "FINISHED"
    assert ran.train_run_id and (secured.root / "report" / "table2_baseline_accuracy.md").is_file()


# ---------------------------------------------------------------- a user who may only read, a wrong password
@pytest.mark.parametrize("name", DENIED_COMMANDS)
def test_read_only_user_is_refused_in_one_line_and_leaves_no_run(secured, ran, name):
    assert ran.train_run_id, "the writer's training run is missing"
    proc, new = ran.denied[name].proc, ran.denied[name].new_runs
    assert "RUNNING" not in new.values(), f"left RUNNING: {new}"
    assert not new, f"runs created although writing is refused: {new}"
    assert proc.returncode == 2, tail(proc)
    lines = error_lines(proc)
    assert len(lines) == 1, tail(proc)
    assert re.search(r"permission[ _]denied", lines[0], re.I) and secured.uri in lines[0], lines[0]


@pytest.mark.parametrize("name", WRONG_PASSWORD_COMMANDS)
def test_wrong_password_fails_in_one_line(secured, ran, name):
    assert ran.train_run_id, "the writer's training run is missing"
    proc = ran.wrong_password[name].proc
    assert ran.wrong_password[name].new_runs == {}
    assert proc.returncode == 2, tail(proc)
    lines = error_lines(proc)
    assert len(lines) == 1, tail(proc)
    assert re.search(r"authenticat|401", lines[0], re.I) and secured.uri in lines[0], lines[0]


# ---------------------------------------------------------------- credentials leak nowhere
@pytest.mark.parametrize("where", [w for w in LEAK_PLACES if w != "ray session files"])
def test_no_credentials_in(secured, ran, where):
    leaks = credential_leaks(secured, where)
    assert not leaks, leaks


def test_no_param_or_tag_names_a_credential(secured, ran):
    """`mlflow run`-style params (an entry point's inputs) and tags: none carries a credential by name."""
    assert credential_keys(secured) == []
