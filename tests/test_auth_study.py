"""A study against a secured tracking server (`mlflow server --app-name basic-auth`, default permission READ),
with local worker processes and on Ray: it works for a user allowed to write, its workers get the credentials
without any being stored, logged or printed, and a read-only user's study fails in one line (exit 2) without
leaving a run behind. (Single commands: test_auth.py.) One module fixture, `ran`, runs each study once."""

import dataclasses
import importlib.util
import re
import shutil
import tempfile
from pathlib import Path

import pytest

pytestmark = [pytest.mark.e2e, pytest.mark.deployment]  # its own CI step (.ci/run)

if importlib.util.find_spec("flask_wtf") is None:  # mlflow[auth]: the basic-auth app needs Flask-WTF
    pytest.skip("mlflow[auth] is not installed (pip install 'mlflow[auth]')", allow_module_level=True)

from lrnoise import names  # noqa: E402

from support.auth_server import (  # noqa: E402
    HAS_RAY,
    LEAK_PLACES,
    STUDY_ARGS,
    Refused,
    admin_client,
    credential_keys,
    credential_leaks,
    error_lines,
    lrnoise,
    refused,
    runs_by_id,
    tail,
)


@dataclasses.dataclass
class Ran:
    done: dict  # the writer's studies: "study" (local workers), "study-ray" -> CompletedProcess
    denied: Refused  # the read-only user's study


@pytest.fixture(scope="module")
def ran(secured) -> Ran:
    done = {"study": lrnoise(secured, secured.writer, *STUDY_ARGS)}
    if HAS_RAY:  # short: Ray's socket paths must stay under ~107 characters
        ray_dir = tempfile.mkdtemp(prefix="lrnoise-ray-", dir="/tmp")
        secured.ray_dirs.append(Path(ray_dir))
        done["study-ray"] = lrnoise(
            secured, secured.writer, *STUDY_ARGS, "--executor", "ray", extra_env={"RAY_TMPDIR": ray_dir}
        )
    yield Ran(done, refused(secured, secured.reader, *STUDY_ARGS))
    for folder in secured.ray_dirs:  # outside tmp_path: removed here
        shutil.rmtree(folder, ignore_errors=True)


@pytest.mark.parametrize("name", ["study", "study-ray"])
def test_writer_study_succeeds(ran, name):
    if name == "study-ray" and not HAS_RAY:
        pytest.skip("ray is not installed")
    assert ran.done[name].returncode == 0, tail(ran.done[name])


def test_writer_studies_train_each_configuration_once_and_leave_nothing_running(secured, ran):
    statuses = runs_by_id(secured)
    assert statuses and set(statuses.values()) == {"FINISHED"}, statuses
    trainings = admin_client(secured).search_runs(
        [e.experiment_id for e in admin_client(secured).search_experiments()], f"tags.`{names.KIND}` = 'train'"
    )
    assert sorted(r.data.params["lr"] for r in trainings) == ["0.001", "0.002"]  # the Ray study reused both


def test_read_only_users_study_is_refused_in_one_line_and_leaves_no_run(secured, ran):
    assert not ran.denied.new_runs, f"runs created although writing is refused: {ran.denied.new_runs}"
    assert ran.denied.proc.returncode == 2, tail(ran.denied.proc)
    lines = error_lines(ran.denied.proc)
    assert len(lines) == 1, tail(ran.denied.proc)
    assert re.search(r"permission[ _]denied", lines[0], re.I) and secured.uri in lines[0], lines[0]


@pytest.mark.parametrize("where", LEAK_PLACES)
def test_no_credentials_in(secured, ran, where):
    if where == "ray session files" and not secured.ray_dirs:
        pytest.skip("ray is not installed")
    leaks = credential_leaks(secured, where)
    assert not leaks, leaks


def test_no_param_or_tag_names_a_credential(secured, ran):
    assert credential_keys(secured) == []
