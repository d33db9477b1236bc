"""Training tracked in MLflow: params, metrics, model + registry, resume, determinism, bad input."""

import json

import keras
import mlflow
import numpy as np
import pytest
from typer.testing import CliRunner

import lrnoise
from lrnoise import names
from lrnoise.cli import app
from lrnoise.config import Execution, TrainConfig
from lrnoise.data import loading, pipelines
from lrnoise.settings import ReportSettings
from lrnoise.store import registry, run_logging
from lrnoise.training.train import train

from support.commands import mlflow_run
from support.docs import undocumented
from support.stores import run_statuses

CONFIG = TrainConfig(dataset="digits", model="resnet8", lr=0.002, epochs=2, batch_size=64, seed=3, patience=0)


class Interrupt(keras.callbacks.Callback):
    """Stands in for Ctrl-C / a crash at the end of epoch `at`."""

    def __init__(self, at):
        super().__init__()
        self.at = at

    def on_epoch_end(self, epoch, logs=None):
        if epoch + 1 == self.at:
            raise KeyboardInterrupt


def history(run_id, metric):
    return [
        (m.step, m.value)
        for m in sorted(mlflow.tracking.MlflowClient().get_metric_history(run_id, metric), key=lambda m: m.step)
    ]


def weights(model_uri):
    return [np.asarray(w) for w in registry.load_model(model_uri).get_weights()]


@pytest.mark.e2e
def test_train_logs_params_metrics_model_and_registry(store):
    result = train(CONFIG)
    run = mlflow.get_run(result.run_id)
    assert run.info.status == "FINISHED"
    assert run.data.params == {
        "dataset": "digits",
        "model": "resnet8",
        "optimizer": "adam",
        "lr": "0.002",
        "batch_size": "64",
        "epochs": "2",
        "seed": "3",
        "init": "glorot_uniform",
        "shortcut": "A",
        "patience": "0",  # the configuration
        "mixed_precision": "none",
        "jit_compile": "None",
        "steps_per_execution": "1",
        "grad_noise_batches": "8",
        "checkpoint_every": "60.0",
    }  # how it ran and measured
    system = {"mlflow.user", "mlflow.source.name", "mlflow.source.type", "mlflow.source.git.commit", "mlflow.runName"}
    logged = [*run.data.params, *run.data.metrics, *(t for t in run.data.tags if t not in system)]
    assert undocumented(logged) == []  # docs/tracking.md names every param, metric and tag of a real run
    logged_model = mlflow.get_logged_model(registry.logged_model_id(result.model_uri))  # MLflow's Models view
    assert logged_model.params.items() >= {k: str(v) for k, v in CONFIG.params().items()}.items()
    assert {m.key: m.value for m in logged_model.metrics}[names.BASELINE_ACCURACY] == result.baseline_accuracy
    description = mlflow.MlflowClient().get_registered_model("lrnoise-digits-resnet8").description
    assert "noise-robust" in description
    client = mlflow.tracking.MlflowClient()
    for name in (*names.EPOCH_METRICS, "grad_noise_c", "grad_noise_power", "update_noise_power"):
        assert [m.step for m in client.get_metric_history(result.run_id, name)] == [1, 2]
    # an epoch's metrics and its gradient noise went to the store in one write (one timestamp per epoch)
    written = {
        name: [m.timestamp for m in client.get_metric_history(result.run_id, name)]
        for name in (*names.EPOCH_METRICS, "grad_noise_power")
    }
    assert len(set(map(tuple, written.values()))) == 1, written
    per_epoch = [m.value for m in client.get_metric_history(result.run_id, "grad_noise_power")]
    assert run.data.metrics["grad_noise_power_mean"] == pytest.approx(np.mean(per_epoch))
    assert run.data.metrics["grad_noise_power_final"] > 0 and "update_noise_power_final" in run.data.metrics
    assert run.data.tags["lrnoise.learned"] == "true"
    assert run.data.tags[names.SEMANTICS] == str(lrnoise.TRAINING_SEMANTICS)  # what trained it
    assert run.data.tags[names.LRNOISE_VERSION] == lrnoise.__version__
    assert run.data.metrics["epochs_trained"] == 2
    split = loading.load("digits", val_fraction=0.1, seed=CONFIG.seed)
    steps = pipelines.steps_per_epoch(len(split.x_train), CONFIG.batch_size)
    assert run.data.metrics[names.OPTIMIZER_STEPS] == 2 * steps
    assert 0.1 < run.data.metrics["baseline_accuracy"] == result.baseline_accuracy <= 1.0
    # the runs table's Dataset column: the training split this seed drew, and the test split a_0 is measured on
    used = {i.tags[0].value: (i.dataset.name, i.dataset.digest) for i in run.inputs.dataset_inputs}
    assert used == {
        "train": ("digits", run_logging.dataset_digest(split.x_train, split.y_train)),
        "test": ("digits", run_logging.dataset_digest(split.x_test, split.y_test)),
    }

    version = client.get_model_version("lrnoise-digits-resnet8", result.model_version)
    assert version.tags == {
        "lr": "0.002",
        "optimizer": "adam",
        "dataset": "digits",
        "model": "resnet8",
        "batch_size": "64",
        "train_noise": "0.0",
        "seed": "3",  # every field a study sweeps
        "source_run_id": result.run_id,
        "lrnoise.learned": "true",
    }
    model_uri = registry.model_uri_of_run(result.run_id)
    assert model_uri == result.model_uri == run.data.tags["lrnoise.model_uri"]
    assert (version.source, version.run_id) == (model_uri, result.run_id)  # as mlflow's own registration has them
    links = json.loads(client.get_logged_model(model_uri.split("/")[-1]).tags["mlflow.modelVersions"])
    assert [(link["name"], str(link["version"])) for link in links] == [
        ("lrnoise-digits-resnet8", result.model_version)
    ]
    x = loading.load("digits").x_test[:32].astype("float32")
    by_registry = mlflow.keras.load_model(f"models:/lrnoise-digits-resnet8/{result.model_version}")
    by_run = mlflow.keras.load_model(registry.model_uri_of_run(result.run_id))
    np.testing.assert_array_equal(by_registry.predict(x, verbose=0), by_run.predict(x, verbose=0))
    pyfunc = mlflow.pyfunc.load_model(f"models:/lrnoise-digits-resnet8/{result.model_version}")
    np.testing.assert_allclose(pyfunc.predict(x), by_run.predict(x, verbose=0), rtol=1e-6)
    # a model that takes raw pixel values: its accuracy from the registry matches the logged a_0
    test = loading.load("digits")
    acc = np.mean(np.argmax(by_registry.predict(test.x_test.astype("float32"), verbose=0), -1) == test.y_test)
    assert acc == pytest.approx(result.baseline_accuracy)


@pytest.mark.e2e
def test_same_seed_same_weights_and_resume_continues_exactly(store, tmp_path):
    straight = train(CONFIG)
    every_epoch = Execution(checkpoint_every=0)  # a checkpoint after each epoch: the resume restores it
    with pytest.raises(KeyboardInterrupt):
        train(CONFIG, extra_callbacks=(Interrupt(1),), execution=every_epoch)
    statuses = run_statuses()
    killed = [r for r, s in statuses.items() if s == "KILLED"]
    assert len(killed) == 1 and "RUNNING" not in statuses.values()
    assert run_logging.download_checkpoint(killed[0], tmp_path / "ckpt") is not None
    resumed = train(CONFIG, resume=killed[0], execution=every_epoch)
    assert resumed.run_id == killed[0] and mlflow.get_run(killed[0]).info.status == "FINISHED"
    assert [m.step for m in mlflow.tracking.MlflowClient().get_metric_history(killed[0], "loss")] == [1, 2]
    for a, b in zip(weights(straight.model_uri), weights(resumed.model_uri)):
        np.testing.assert_array_equal(a, b)
    other = train(TrainConfig(**{**CONFIG.params(), "seed": 4}))
    assert any(not np.array_equal(a, b) for a, b in zip(weights(straight.model_uri), weights(other.model_uri)))


@pytest.mark.e2e
def test_a_resume_without_a_checkpoint_replays_logged_epochs_without_logging_them_again(store):
    """No checkpoint was uploaded before the interruption (checkpoint_every: an hour), so the resume trains from
    the start; the two epochs written before it (metrics and gradient noise, one write each) are not written
    again, and the third is."""
    config = TrainConfig(**{**CONFIG.params(), "epochs": 3})
    hourly = Execution(checkpoint_every=3600)
    with pytest.raises(KeyboardInterrupt):
        train(config, extra_callbacks=(Interrupt(2),), execution=hourly)
    killed = [r for r, s in run_statuses().items() if s == "KILLED"]
    client = mlflow.tracking.MlflowClient()
    assert [m.step for m in client.get_metric_history(killed[0], "grad_noise_power")] == [1, 2]
    before = {m.step: m.value for m in client.get_metric_history(killed[0], "grad_noise_power")}
    train(config, resume=killed[0], execution=hourly)
    for name in ("loss", "val_accuracy", "grad_noise_power", "update_noise_power"):
        assert [m.step for m in client.get_metric_history(killed[0], name)] == [1, 2, 3], name
    after = {m.step: m.value for m in client.get_metric_history(killed[0], "grad_noise_power")}
    assert {step: after[step] for step in before} == before


@pytest.mark.e2e
def test_early_stopping_restores_best_weights(store):
    result = train(TrainConfig(dataset="digits", model="resnet8", lr=0.05, epochs=6, batch_size=64, patience=1))
    run = mlflow.get_run(result.run_id)
    history = [m.value for m in mlflow.tracking.MlflowClient().get_metric_history(result.run_id, "val_loss")]
    best = int(np.argmin(history)) + 1
    assert run.data.metrics["best_epoch"] == best
    assert run.data.metrics["epochs_trained"] == min(6, best + 1) == len(history)


@pytest.mark.parametrize(
    "args, message",
    [
        (["--dataset", "mnist"], "digits, cifar10, cifar100"),
        (["--model", "resnet18"], "resnet8, resnet20, resnet32, resnet44, resnet56"),
        (["--optimizer", "rmsprop"], "sgd, momentum, nesterov, adam, nadam, adamax"),
        (["--lr", "0"], "lr must be a finite number > 0"),
        (["--dataset", "cifar10", "--data-dir", "/no/such/dir"], "does not exist"),
        (["--resume", "0123456789abcdef0123456789abcdef"], "no run"),
    ],
)
def test_bad_input_one_line_error_no_run_left(store, args, message):
    result = CliRunner().invoke(app, ["train", *args])  # each refused before any training
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and message in lines[0]
    assert "RUNNING" not in run_statuses().values()


def test_bad_checksum_cli(store, tmp_path):
    (tmp_path / "cifar-10-python.tar.gz").write_bytes(b"not the archive")
    result = CliRunner().invoke(app, ["train", "--dataset", "cifar10", "--data-dir", str(tmp_path)])
    assert result.exit_code == 2 and "checksum mismatch" in result.output


@pytest.mark.e2e
def test_mlflow_run_train_entry_point(store):
    proc = mlflow_run(
        "train",
        "epochs=1",
        "lr=1e-3",
        "batch_size=256",
        "model=resnet8",
        "grad_noise_batches=0",
        "budget=steps",
        "patience=0",  # budget steps never stops early
        "reference_batch_size=512",
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    statuses = run_statuses()
    assert list(statuses.values()) == ["FINISHED"]  # one run: the entry point's, logged into by the code
    run = mlflow.get_run(next(iter(statuses)))
    assert run.data.params["lr"] == "1e-3" and run.data.params["optimizer"] == "adam"
    assert (run.data.params["budget"], run.data.params["reference_batch_size"]) == ("steps", "512")
    n_train = len(loading.load("digits", val_fraction=0.1, seed=0).x_train)
    one_epoch = pipelines.steps_per_epoch(n_train, 512)  # one epoch of batch 512's
    assert run.data.metrics[names.OPTIMIZER_STEPS] == one_epoch
    assert "baseline_accuracy" in run.data.metrics
    assert run.data.tags[names.KIND] == "train" and names.MODEL_URI in run.data.tags


@pytest.mark.e2e
def test_execution_options(store):
    result = train(
        TrainConfig(dataset="digits", model="resnet8", lr=0.002, epochs=1, batch_size=64, patience=0),
        execution=Execution("bf16", False, 4),
    )
    run = mlflow.get_run(result.run_id)
    assert run.data.params["mixed_precision"] == "bf16" and run.data.params["steps_per_execution"] == "4"
    model = registry.load_model(result.model_uri)
    conv = model.get_layer("stem_conv")
    assert conv.dtype_policy.name == "mixed_bfloat16" and conv.kernel.dtype == "float32"  # weights stay fp32
    assert keras.config.dtype_policy().name == "float32"  # the global policy is left as it was
    bad = CliRunner().invoke(app, ["train", "--mixed-precision", "fp8"])
    assert bad.exit_code == 2 and "choose one of none, bf16, fp16" in bad.output


@pytest.mark.e2e
def test_a_model_that_did_not_learn_is_marked_refused_and_reported(store, tmp_path):
    """sgd at lr 50 diverges: training stops at the first non-finite loss, the model is at chance, tagged
    learned=false (run and registry version), noise-eval refuses it unless forced, the report says so."""
    runner = CliRunner()
    broken = runner.invoke(
        app,
        [
            "train",
            "--model",
            "resnet8",
            "--optimizer",
            "sgd",
            "--lr",
            "50",
            "--epochs",
            "3",
            "--batch-size",
            "64",
            "--grad-noise-batches",
            "0",
            "--patience",
            "0",
        ],
    )
    assert broken.exit_code == 0, broken.output
    assert "did not learn" in broken.output
    good = train(CONFIG)
    runs = {r.info.run_id: r for r in mlflow.search_runs(experiment_names=["lrnoise"], output_format="list")}
    (bad_id,) = [i for i in runs if i != good.run_id]
    bad = runs[bad_id]
    assert bad.data.tags["lrnoise.learned"] == "false" and runs[good.run_id].data.tags["lrnoise.learned"] == "true"
    assert bad.data.metrics["baseline_accuracy"] < 0.2
    if "nonfinite_loss_epoch" in bad.data.metrics:  # it diverged: stopped at that epoch, not after 3
        assert bad.data.metrics["epochs_trained"] == bad.data.metrics["nonfinite_loss_epoch"]
    client = mlflow.tracking.MlflowClient()
    (version,) = client.search_model_versions(f"run_id = '{bad_id}'")
    assert version.tags["lrnoise.learned"] == "false"

    refused = runner.invoke(app, ["noise-eval", "--run-id", bad_id, "--trials", "1"])
    assert refused.exit_code == 2 and len(refused.output.strip().splitlines()) == 1
    assert "did not learn" in refused.output and "--force" in refused.output
    forced = runner.invoke(app, ["noise-eval", "--run-id", bad_id, "--trials", "1", "--etas", "0.1", "--force"])
    assert forced.exit_code == 0, forced.output
    assert runner.invoke(app, ["noise-eval", "--run-id", good.run_id, "--trials", "1"]).exit_code == 0

    from lrnoise.report import assembly

    built = assembly.build_and_write(ReportSettings(out=str(tmp_path / "report"), optimizer="sgd"))
    table3 = (tmp_path / "report" / "table3_avg_normalized_accuracy.md").read_text()
    table2 = (tmp_path / "report" / "table2_baseline_accuracy.md").read_text()
    assert "no learning" in table3 and "no learning" not in table2  # Table II keeps the measured accuracy
    assert {p.with_suffix("").name for p in (tmp_path / "report").glob("fig*.pdf")} == {
        p.with_suffix("").name for p in (tmp_path / "report").glob("fig*.png")
    }  # every figure also as pdf by default
    assert bad_id not in set(built.sweet_spots.get("run_id", []))
    aliases = {a for v in client.search_model_versions(f"run_id = '{bad_id}'") for a in v.aliases}
    assert "noise-robust" not in aliases
    assert "RUNNING" not in run_statuses().values()


@pytest.mark.e2e
def test_a_configuration_trains_bit_for_bit_alike_alone_and_inside_a_sweep(store):
    """Inside a sweep a configuration starts from the process's traced model (build.SweepCache), with another
    optimizer or prepared while a claim settles: the science must not change, nor the validation metrics, nor
    the optimizer the logged model is restored with. tests/test_build.py covers each optimizer's state."""
    from lrnoise.training.build import SweepCache

    target = TrainConfig(**{**CONFIG.params(), "lr": 0.001, "seed": 5, "epochs": 1})
    other_optimizer = TrainConfig(**{**target.params(), "optimizer": "nadam"})
    alone = {config: train(config) for config in (target, other_optimizer)}  # no sweep: new models
    sweep = SweepCache()
    train(TrainConfig(**{**target.params(), "lr": 0.003}), sweep=sweep)  # another lr first: its model kept
    ((shell, _),) = sweep.models.values()
    in_sweep = {other_optimizer: train(other_optimizer, sweep=sweep)}  # the same model, given a Nadam
    sweep.prepare(target)  # what a study does while its claim on the configuration settles
    in_sweep[target] = train(target, sweep=sweep)  # back to Adam, from the prepared model
    for config, result in in_sweep.items():
        assert result.model is shell, config.optimizer  # reused, not rebuilt
        for a, b in zip(weights(alone[config].model_uri), weights(result.model_uri)):
            np.testing.assert_array_equal(a, b)
        assert result.baseline_accuracy == alone[config].baseline_accuracy
        for metric in ("val_loss", "val_accuracy", "loss"):
            assert history(result.run_id, metric) == history(alone[config].run_id, metric), metric
        restored = registry.load_model(result.model_uri).optimizer
        assert type(restored).__name__.lower() == config.optimizer and restored.iterations.numpy() > 0


def test_a_checkpoint_of_an_earlier_lrnoise_keeps_its_best_weights(tmp_path):
    """Checkpoints written before the best weights moved to .npz (best.weights.h5) resume with those weights."""
    from lrnoise.training import networks
    from lrnoise.training import train as train_module

    previous, folder = tmp_path / "prev", tmp_path / "ckpt"
    previous.mkdir(), folder.mkdir()
    model = networks.resnet(8, 3, (8, 8, 1))
    model.save_weights(previous / train_module.LEGACY_BEST_WEIGHTS)
    best = model.get_weights()
    model.set_weights([w + 1 for w in best])  # training went on after the best epoch
    model.save(previous / "last.keras")
    (previous / "state.json").write_text('{"epoch": 3, "best_val_loss": 0.5, "best_epoch": 2, "wait": 1}')
    restored, state = train_module.restore(previous, folder)
    assert state["best_epoch"] == 2
    for got, want in zip(train_module.saved_weights(folder / train_module.BEST_WEIGHTS), best):
        np.testing.assert_array_equal(got, want)
    for got, want in zip(restored.get_weights(), model.get_weights()):  # the model itself stays the last one
        np.testing.assert_array_equal(got, want)
