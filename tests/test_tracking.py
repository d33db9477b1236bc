"""The store's helpers (session, run_logging, semantics): how values are compared and keyed, how names are made,
the one reuse rule."""

import os

import mlflow
import numpy as np
import pytest

from lrnoise import names
from lrnoise.errors import LrnoiseError
from lrnoise.noise import noise_config
from lrnoise.store import leases, run_logging, semantics, session

from support.stores import run_statuses


@pytest.mark.parametrize(
    "a, b, same",
    [
        ("1e-3", "0.001", True),
        ("'0.1, 0.2'", "0.1,0.2", True),
        ("0.1,0.2", "0.1,0.3", False),
        ("0.1,0.2", "0.1", False),
        ("adam", "adam", True),
        ("adam", "sgd", False),
        ("A", "'A'", True),
        ("1", "1.0", True),
        ("'unbalanced", "'unbalanced", True),
    ],
)
def test_same_value_reads_mlflow_run_spellings(a, b, same):
    assert run_logging.same_value(a, b) is same


@pytest.mark.parametrize(
    "text, unquoted", [("'0.1, 0.2'", "0.1, 0.2"), ("plain", "plain"), ("a b", "a b"), ("'open", "'open")]
)
def test_unquote(text, unquoted):
    assert run_logging.unquote(text) == unquoted


def test_config_key_is_canonical():
    base = {"lr": 0.00075, "etas": [0.1, 0.2], "seed": 0}
    assert names.config_key(base) == names.config_key({"seed": 0, "etas": (0.1, 0.2), "lr": 7.5e-4})
    assert names.config_key(base) != names.config_key({**base, "lr": 0.0007})
    assert names.canonical(0.00075) == "0.00075" and names.canonical([1, 2.5]) == "1,2.5"


@pytest.mark.parametrize(
    "level_name, level, label",
    [
        ("eta", 0.1, "10"),
        ("eta", 0.025, "2.5"),
        ("eta", 0.01, "1"),
        ("t", 1.0, "1s"),
        ("t", 3600.0, "1h"),
        ("t", 86400.0, "1d"),
        ("t", 2592000.0, "30d"),
        ("t", 31536000.0, "1y"),
        ("t", 90.0, "90s"),
        ("t", 0.0, "0s"),
    ],
)
def test_level_labels_and_metric_names(level_name, level, label):
    assert noise_config.level_label(level_name, level) == label
    metric = names.level_metric("normalized_accuracy", level_name, label)
    assert metric == f"normalized_accuracy_{level_name}_{label}"


def test_summary_prefix_keeps_the_papers_names():
    assert names.summary_prefix("additive-paper", True) == ""
    assert names.summary_prefix("pcm-1s-1y", False) == "pcm-1s-1y/"
    params = names.noise_params(
        {**noise_config.NoiseConfig("pcm").measured(), **noise_config.NoiseConfig("pcm").precision()}
    )
    assert params["noise.noise"] == "pcm" and "g_max=25.0" in params["noise.options"]
    assert all(k.startswith("noise.") for k in params)  # never meet the entry point's own params


def test_existing_run_is_the_one_reuse_rule(store):
    client = mlflow.tracking.MlflowClient()
    exp = session.ensure_experiment("lrnoise")

    def make(status, heartbeat=None):
        tags = {names.KIND: "train", names.CONFIG_KEY: "k", **semantics.semantics_tags("train")}
        run = client.create_run(exp, tags=tags)
        if heartbeat is not None:
            client.set_tag(run.info.run_id, names.HEARTBEAT, str(heartbeat))
        if status != "RUNNING":
            client.set_terminated(run.info.run_id, status)
        return run.info.run_id

    import time

    dead_old, dead_new = make("RUNNING", heartbeat=0), make("KILLED")
    found = leases.existing_run(exp, "train", "k")
    assert (found.finished, found.resume, found.live) == (None, dead_new, None)  # resume the newest
    assert run_statuses()[dead_old] == "FAILED"  # the rest marked FAILED
    live = make("RUNNING", heartbeat=time.time())
    found = leases.existing_run(exp, "train", "k")
    assert found.live == live and found.resume is None  # a live owner is left alone
    done = make("FINISHED")
    found = leases.existing_run(exp, "train", "k")
    assert found.finished == done and run_statuses()[live] == "RUNNING"
    assert leases.existing_run(exp, "train", "other").finished is None


def test_ensure_experiment_survives_another_process_creating_it_first(store, monkeypatch):
    """Two studies started at once both find no experiment; the second create fails: it must use the first's."""
    from mlflow.tracking import MlflowClient

    real_create = MlflowClient.create_experiment

    def raced(self, name, *args, **kwargs):
        real_create(self, name, *args, **kwargs)  # the other study wins the race ...
        return real_create(self, name, *args, **kwargs)  # ... so this one's create is refused

    monkeypatch.setattr(MlflowClient, "create_experiment", raced)
    exp_id = session.ensure_experiment("raced")
    assert MlflowClient().get_experiment_by_name("raced").experiment_id == exp_id


def test_ensure_experiment_survives_another_study_tagging_it_at_the_same_moment(store, monkeypatch):
    """Two studies tag a new experiment at once: the store looks the tag up, then inserts it, so the later insert
    fails on the UNIQUE constraint (seen with gunicorn's two server processes over sqlite). The tag is then there;
    a refusal (permissions) is not retried."""
    from mlflow.exceptions import MlflowException
    from mlflow.protos.databricks_pb2 import BAD_REQUEST, PERMISSION_DENIED
    from mlflow.tracking import MlflowClient

    real_tag, calls = MlflowClient.set_experiment_tag, []

    def raced(self, exp_id, key, value):
        calls.append(key)
        if len(calls) == 1:
            real_tag(self, exp_id, key, value)  # the other study's insert lands first ...
            raise MlflowException(
                "(sqlite3.IntegrityError) UNIQUE constraint failed: experiment_tags.key, experiment_tags.experiment_id",
                error_code=BAD_REQUEST,
            )  # ... ours collides
        return real_tag(self, exp_id, key, value)

    monkeypatch.setattr(MlflowClient, "set_experiment_tag", raced)
    exp_id = session.ensure_experiment("tag-raced")
    assert MlflowClient().get_experiment(exp_id).tags[names.EXPERIMENT_KIND[0]] == names.EXPERIMENT_KIND[1]
    assert len(calls) == 2

    def refused(self, exp_id, key, value):
        calls.append(key)
        raise MlflowException("Permission denied", error_code=PERMISSION_DENIED)

    monkeypatch.setattr(MlflowClient, "set_experiment_tag", refused)
    calls.clear()
    with pytest.raises(LrnoiseError, match="denied"):
        session.ensure_experiment("tag-refused")
    assert len(calls) == 1


def test_a_run_is_created_with_its_tags_and_its_params_go_in_one_checked_write(store):
    """leases.run creates a new run with its tags; log_params writes the configuration and the execution
    params (each checked against what is on the run, as `mlflow run` pre-logs it) and the key tag."""
    with leases.run("lrnoise", "train", tags={"extra": "x"}) as active:
        run_id = active.info.run_id
        mlflow.log_params({"lr": "1e-3", "mixed_precision": "none"})  # as `mlflow run` pre-logs them
        run_logging.log_params({"lr": 0.001, "seed": 2}, execution={"mixed_precision": "none", "jit_compile": None})
        with pytest.raises(LrnoiseError, match="param lr is already '1e-3' on run .*cannot log '0.002'"):
            run_logging.log_params({"lr": 0.002, "seed": 2})
        with pytest.raises(LrnoiseError, match="param mixed_precision is already 'none' .*'bf16'"):
            run_logging.log_params({"lr": 0.001, "seed": 2}, execution={"mixed_precision": "bf16"})
    run = mlflow.get_run(run_id)
    assert run.info.status == "FINISHED"
    assert run.data.params == {"lr": "1e-3", "seed": "2", "mixed_precision": "none", "jit_compile": "None"}
    assert run.data.tags[names.KIND] == "train" and run.data.tags["extra"] == "x"
    assert run.data.tags[names.CONFIG_KEY] == names.config_key({"lr": 0.001, "seed": 2})


# ---------------------------------------------------------------- dataset inputs
def test_a_datasets_digest_reads_every_value():
    x, y = np.zeros((30000, 2, 2, 1), np.uint8), np.arange(30000) % 10
    digest = run_logging.dataset_digest(x, y)
    assert run_logging.dataset_digest(x.copy(), y.copy()) == digest
    changed = x.copy()
    changed[-1, 1, 1, 0] = 1  # the last pixel: past MLflow's own 10,000-value sample
    assert run_logging.dataset_digest(changed, y) != digest
    assert run_logging.dataset_digest(x, np.roll(y, 1)) != digest


def test_a_run_shows_its_data_as_dataset_inputs(store):
    x, y = np.arange(2 * 8 * 8).reshape(2, 8, 8, 1).astype(np.uint8), np.array([3, 4])
    with mlflow.start_run() as run:
        run_logging.log_datasets(
            "digits",
            "sklearn.datasets.load_digits",
            {names.TRAIN_SPLIT: (x, y), names.TEST_SPLIT: (x[:1], y[:1])},
        )
    inputs = mlflow.get_run(run.info.run_id).inputs.dataset_inputs
    seen = {(i.dataset.name, i.dataset.digest, {t.key: t.value for t in i.tags}["mlflow.data.context"]) for i in inputs}
    assert seen == {
        ("digits", run_logging.dataset_digest(x, y), "train"),
        ("digits", run_logging.dataset_digest(x[:1], y[:1]), "test"),
    }
    assert all("load_digits" in i.dataset.source for i in inputs)


@pytest.mark.parametrize(
    "collision",
    [
        "(sqlite3.IntegrityError) UNIQUE constraint failed: datasets.experiment_id, datasets.name, datasets.digest",
        '(psycopg.errors.UniqueViolation) duplicate key value violates unique constraint "uq_datasets"',
    ],
    ids=["sqlite", "postgresql"],
)
def test_two_workers_logging_the_same_dataset_at_once_lose_no_run(store, monkeypatch, collision):
    """The store creates a dataset in a get-or-create that is not atomic: the loser of two workers logging the
    same split at once gets the store's unique-key error (seen with two study workers on one server; sqlite and
    PostgreSQL word it differently). Its inputs are logged again, and the dataset the winner created is reused."""
    from mlflow.exceptions import MlflowException

    x, y = np.zeros((2, 8, 8, 1), np.uint8), np.array([1, 2])
    with mlflow.start_run():  # the winner
        run_logging.log_datasets("digits", "src", {names.TEST_SPLIT: (x, y)})
    real, calls = mlflow.log_inputs, []

    def racing(**kwargs):
        calls.append(kwargs)
        if len(calls) == 1:
            raise MlflowException(collision)
        return real(**kwargs)

    monkeypatch.setattr(mlflow, "log_inputs", racing)
    with mlflow.start_run() as loser:
        run_logging.log_datasets("digits", "src", {names.TEST_SPLIT: (x, y)})
    assert len(calls) == 2
    assert [i.dataset.digest for i in mlflow.get_run(loser.info.run_id).inputs.dataset_inputs] == [
        run_logging.dataset_digest(x, y)
    ]
    calls.clear()
    monkeypatch.setattr(mlflow, "log_inputs", lambda **kw: (_ for _ in ()).throw(MlflowException("refused")))
    with pytest.raises(MlflowException, match="refused"), mlflow.start_run():  # any other error is not retried
        run_logging.log_datasets("digits", "src", {names.TEST_SPLIT: (x, y)})


def test_a_commands_environment_and_log_levels_end_with_it(monkeypatch):
    """What one command sets for itself (fail-fast HTTP, quiet loggers) is gone after it; a user's own setting of
    the same variable is kept throughout."""
    import logging

    monkeypatch.delenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", raising=False)
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "99")
    with session.fail_fast_http():
        assert os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] == "1"
        assert os.environ["MLFLOW_HTTP_REQUEST_TIMEOUT"] == "99"  # the user's
    assert "MLFLOW_HTTP_REQUEST_MAX_RETRIES" not in os.environ and os.environ["MLFLOW_HTTP_REQUEST_TIMEOUT"] == "99"
    level = logging.getLogger("mlflow").level
    with session.quiet_loggers():
        assert logging.getLogger("mlflow").getEffectiveLevel() >= logging.WARNING
    assert logging.getLogger("mlflow").level == level


def test_a_report_under_mlflow_run_in_another_experiment_lands_in_the_reported_one(store, tmp_path, monkeypatch):
    """`mlflow run . -e report` without --experiment-name puts its run in Default: the report run is made in the
    experiment reported on, and the entry point's run points at it."""
    reported = session.ensure_experiment("lrnoise")
    entry = mlflow.tracking.MlflowClient().create_run("0").info.run_id  # what `mlflow run` made, in Default
    monkeypatch.setenv("MLFLOW_RUN_ID", entry)
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "table.md").write_text("# a table\n")
    report_id = run_logging.log_report(reported, tmp_path / "out")
    assert "MLFLOW_RUN_ID" not in os.environ  # consumed, as mlflow.start_run consumes it
    report = mlflow.get_run(report_id)
    assert report.info.experiment_id == reported and report.data.tags[names.KIND] == "report"
    assert [a.path for a in mlflow.artifacts.list_artifacts(run_id=report_id)] == ["table.md"]
    assert mlflow.get_run(entry).data.tags[names.REPORT_RUN_ID] == report_id
    inside = mlflow.tracking.MlflowClient().create_run(reported).info.run_id
    monkeypatch.setenv("MLFLOW_RUN_ID", inside)
    assert run_logging.log_report(reported, tmp_path / "out") == inside  # in the reported experiment: the report run


def test_a_mlruns_folder_that_makes_mlflow_use_the_file_store_is_named_in_one_line(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert session.file_store_notice() is None  # no ./mlruns: MLflow's default database
    (tmp_path / "mlruns").mkdir()
    notice = session.file_store_notice()
    assert notice.startswith("note: ./mlruns exists") and "MLFLOW_TRACKING_URI=sqlite:///mlflow.db" in notice
    assert "\n" not in notice
    from typer.testing import CliRunner

    from lrnoise.cli import app

    said = CliRunner().invoke(app, ["report", "--experiment", "no-such-experiment"])
    assert said.exit_code == 2 and said.output.startswith(notice)  # every command says it first
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    assert session.file_store_notice() is None  # the user chose a store


def test_every_param_name_is_a_configuration_field():
    """The training params are TrainConfig's fields, in its order; the dataset's param is one of them."""
    from dataclasses import fields

    from lrnoise.config import TrainConfig

    assert names.TRAIN_PARAMS == tuple(f.name for f in fields(TrainConfig))
    assert names.DATASET_PARAM in names.TRAIN_PARAMS
