"""Training tracked in MLflow: params, metrics, model + registry, resume, determinism, bad input."""
import json
import os
import subprocess
import sys

import keras
import mlflow
import numpy as np
import pytest
from typer.testing import CliRunner

from conftest import ROOT, run_statuses
from lrnoise import data, tracking
from lrnoise.cli import app
from lrnoise.train import Execution, TrainConfig, train

CONFIG = TrainConfig(dataset="digits", model="resnet20", lr=0.002, epochs=2, batch_size=64, seed=3, patience=0)


class Interrupt(keras.callbacks.Callback):
    """Stands in for Ctrl-C / a crash at the end of epoch `at`."""

    def __init__(self, at):
        super().__init__()
        self.at = at

    def on_epoch_end(self, epoch, logs=None):
        if epoch + 1 == self.at:
            raise KeyboardInterrupt


def history(run_id, metric):
    return [(m.step, m.value) for m in sorted(mlflow.tracking.MlflowClient().get_metric_history(run_id, metric),
                                              key=lambda m: m.step)]


def weights(model_uri):
    return [np.asarray(w) for w in tracking.load_model(model_uri).get_weights()]


@pytest.mark.e2e
def test_train_logs_params_metrics_model_and_registry(store):
    result = train(CONFIG)
    run = mlflow.get_run(result.run_id)
    assert run.info.status == "FINISHED"
    assert run.data.params == {"dataset": "digits", "model": "resnet20", "optimizer": "adam", "lr": "0.002",
                               "batch_size": "64", "epochs": "2", "seed": "3", "init": "glorot_uniform",
                               "shortcut": "A", "patience": "0",  # the configuration
                               "mixed_precision": "none", "jit_compile": "None", "steps_per_execution": "1",
                               "grad_noise_batches": "8", "checkpoint_every": "60.0"}  # how it ran and measured
    client = mlflow.tracking.MlflowClient()
    for name in (*tracking.EPOCH_METRICS, "grad_noise_c", "grad_noise_power", "update_noise_power"):
        assert [m.step for m in client.get_metric_history(result.run_id, name)] == [1, 2]
    # an epoch's metrics and its gradient noise went to the store in one write (one timestamp per epoch)
    written = {name: [m.timestamp for m in client.get_metric_history(result.run_id, name)]
               for name in (*tracking.EPOCH_METRICS, "grad_noise_power")}
    assert len(set(map(tuple, written.values()))) == 1, written
    per_epoch = [m.value for m in client.get_metric_history(result.run_id, "grad_noise_power")]
    assert run.data.metrics["grad_noise_power_mean"] == pytest.approx(np.mean(per_epoch))
    assert run.data.metrics["grad_noise_power_final"] > 0 and "update_noise_power_final" in run.data.metrics
    assert run.data.tags["lrnoise.learned"] == "true"
    assert run.data.metrics["epochs_trained"] == 2
    assert 0.1 < run.data.metrics["baseline_accuracy"] == result.baseline_accuracy <= 1.0

    version = client.get_model_version("lrnoise-digits-resnet20", result.model_version)
    assert version.tags == {"lr": "0.002", "optimizer": "adam", "dataset": "digits", "model": "resnet20",
                            "seed": "3", "source_run_id": result.run_id, "lrnoise.learned": "true"}
    model_uri = tracking.model_uri_of_run(result.run_id)
    assert model_uri == result.model_uri == run.data.tags["lrnoise.model_uri"]
    assert (version.source, version.run_id) == (model_uri, result.run_id)  # as mlflow's own registration has them
    links = json.loads(client.get_logged_model(model_uri.split("/")[-1]).tags["mlflow.modelVersions"])
    assert [(link["name"], str(link["version"])) for link in links] == [("lrnoise-digits-resnet20",
                                                                          result.model_version)]
    x = data.load("digits").x_test[:32].astype("float32")
    by_registry = mlflow.keras.load_model(f"models:/lrnoise-digits-resnet20/{result.model_version}")
    by_run = mlflow.keras.load_model(tracking.model_uri_of_run(result.run_id))
    np.testing.assert_array_equal(by_registry.predict(x, verbose=0), by_run.predict(x, verbose=0))
    pyfunc = mlflow.pyfunc.load_model(f"models:/lrnoise-digits-resnet20/{result.model_version}")
    np.testing.assert_allclose(pyfunc.predict(x), by_run.predict(x, verbose=0), rtol=1e-6)
    # a model that takes raw pixel values: its accuracy from the registry matches the logged a_0
    test = data.load("digits")
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
    assert tracking.download_checkpoint(killed[0], tmp_path / "ckpt") is not None
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
    result = train(TrainConfig(dataset="digits", model="resnet20", lr=0.05, epochs=6, batch_size=64, patience=1))
    run = mlflow.get_run(result.run_id)
    history = [m.value for m in mlflow.tracking.MlflowClient().get_metric_history(result.run_id, "val_loss")]
    best = int(np.argmin(history)) + 1
    assert run.data.metrics["best_epoch"] == best
    assert run.data.metrics["epochs_trained"] == min(6, best + 1) == len(history)


@pytest.mark.parametrize("args, message", [
    (["--dataset", "mnist"], "digits, cifar10, cifar100"),
    (["--model", "resnet18"], "resnet20, resnet32, resnet44, resnet56"),
    (["--optimizer", "rmsprop"], "sgd, momentum, nesterov, adam, nadam, adamax"),
    (["--lr", "0"], "lr must be > 0"),
    (["--dataset", "cifar10", "--data-dir", "/no/such/dir"], "does not exist"),
    (["--resume", "0123456789abcdef0123456789abcdef"], "no run"),
])
def test_bad_input_one_line_error_no_run_left(store, args, message):
    result = CliRunner().invoke(app, ["train", "--epochs", "1", *args])
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
    cmd = [sys.executable, "-m", "mlflow", "run", str(ROOT), "-e", "train", "--env-manager", "local",
           "--experiment-name", "lrnoise", "-P", "epochs=1", "-P", "lr=1e-3", "-P", "batch_size=256"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    statuses = run_statuses()
    assert list(statuses.values()) == ["FINISHED"]  # one run: the entry point's, logged into by the code
    run = mlflow.get_run(next(iter(statuses)))
    assert run.data.params["lr"] == "1e-3" and run.data.params["optimizer"] == "adam"
    assert "baseline_accuracy" in run.data.metrics
    assert run.data.tags[tracking.KIND] == "train" and tracking.MODEL_URI in run.data.tags


@pytest.mark.e2e
def test_execution_options(store):
    result = train(TrainConfig(dataset="digits", lr=0.002, epochs=1, batch_size=64, patience=0),
                   execution=Execution("bf16", False, 4))
    run = mlflow.get_run(result.run_id)
    assert run.data.params["mixed_precision"] == "bf16" and run.data.params["steps_per_execution"] == "4"
    model = tracking.load_model(result.model_uri)
    conv = model.get_layer("stem_conv")
    assert conv.dtype_policy.name == "mixed_bfloat16" and conv.kernel.dtype == "float32"  # weights stay fp32
    assert keras.config.dtype_policy().name == "float32"  # the global policy is left as it was
    bad = CliRunner().invoke(app, ["train", "--mixed-precision", "fp8"])
    assert bad.exit_code == 2 and "none, bf16 or fp16" in bad.output


@pytest.mark.e2e
def test_a_model_that_did_not_learn_is_marked_refused_and_reported(store, tmp_path):
    """sgd at lr 5 diverges: training stops at the first non-finite loss, the model is at chance, tagged
    learned=false (run and registry version), noise-eval refuses it unless forced, the report says so."""
    runner = CliRunner()
    broken = runner.invoke(app, ["train", "--optimizer", "sgd", "--lr", "5", "--epochs", "3", "--batch-size", "64",
                                 "--patience", "0"])
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

    from lrnoise import report
    built = report.build_and_write("lrnoise", tmp_path / "report", optimizer="sgd")
    table3 = (tmp_path / "report" / "table3_avg_normalized_accuracy.md").read_text()
    table2 = (tmp_path / "report" / "table2_baseline_accuracy.md").read_text()
    assert "no learning" in table3 and "no learning" not in table2  # Table II keeps the measured accuracy
    assert bad_id not in set(built.sweet_spots.get("run_id", []))
    aliases = {a for v in client.search_model_versions(f"run_id = '{bad_id}'") for a in v.aliases}
    assert "noise-robust" not in aliases
    assert "RUNNING" not in run_statuses().values()


@pytest.mark.e2e
def test_a_configuration_trains_bit_for_bit_alike_alone_and_inside_a_sweep(store):
    """The sweep reuses one traced model per architecture (issue 13), given another optimizer (swap_optimizer:
    its validation step and metrics kept) and prepared while a claim settles: the science must not change, nor
    the validation metrics, nor the optimizer the logged model is restored with."""
    from lrnoise import train as train_module
    target = TrainConfig(**{**CONFIG.params(), "lr": 0.001, "seed": 5})
    other_optimizer = TrainConfig(**{**target.params(), "optimizer": "nadam"})
    alone = {}
    for config in (target, other_optimizer):
        train_module._COMPILED.clear()
        train_module._INITIAL.clear()  # built, not taken from the cache of initial weights
        alone[config] = train(config)
    train_module._COMPILED.clear()
    train(TrainConfig(**{**target.params(), "lr": 0.003}))  # another lr first: its model and initial weights reused
    ((shell, _),) = train_module._COMPILED.values()
    in_sweep = {other_optimizer: train(other_optimizer)}  # the same model, its optimizer swapped for Nadam
    train_module.prepare(target)  # what a study does while its claim on the configuration settles
    in_sweep[target] = train(target)  # back to Adam, from the prepared model
    for config, result in in_sweep.items():
        assert result.model is shell, config.optimizer  # reused, not rebuilt
        for a, b in zip(weights(alone[config].model_uri), weights(result.model_uri)):
            np.testing.assert_array_equal(a, b)
        assert result.baseline_accuracy == alone[config].baseline_accuracy
        for metric in ("val_loss", "val_accuracy", "loss"):
            assert history(result.run_id, metric) == history(alone[config].run_id, metric), metric
        restored = tracking.load_model(result.model_uri).optimizer
        assert type(restored).__name__.lower() == config.optimizer and restored.iterations.numpy() > 0


def test_cached_initial_weights_are_a_new_build_and_leave_the_generators_alike():
    """reusable_model takes a seed's initial weights from its cache (no Keras build) after the first time:
    the weights, and Python's generator that a build draws from, are as after a new build of that seed."""
    import random

    from lrnoise import train as train_module
    from lrnoise.train import Execution, build_model, reusable_model, seed_everything
    ds = train_module.load_data(CONFIG)
    config = TrainConfig(**{**CONFIG.params(), "seed": 3})

    def built(make) -> tuple:
        seed_everything(config.seed)
        model = make()
        return [np.array(w) for w in model.get_weights()], random.random(), np.random.rand()

    fresh = built(lambda: build_model(config, ds))
    train_module._COMPILED.clear()
    train_module._INITIAL.clear()
    first = built(lambda: reusable_model(config, ds, Execution()))  # a new model, its weights remembered
    calls = []
    original = train_module.initial_model
    train_module.initial_model = lambda *a, **k: calls.append(1) or original(*a, **k)
    try:
        again = built(lambda: reusable_model(TrainConfig(**{**config.params(), "lr": 0.01}), ds, Execution()))
    finally:
        train_module.initial_model = original
    assert calls == []  # from the cache, no build
    for got in (first, again):
        assert all(np.array_equal(a, b) for a, b in zip(fresh[0], got[0])) and len(fresh[0]) == len(got[0])
        assert got[1:] == fresh[1:]  # Python's and NumPy's next draws


def test_seed_everything_resets_every_generator_a_training_draws_from():
    """Called twice with one seed (the second time without re-seeding TensorFlow, which would clear its graph
    caches), it leaves Python's, NumPy's and Keras's generators exactly where keras.utils.set_random_seed does."""
    import random

    from lrnoise import models
    from lrnoise.train import seed_everything

    def draws():
        weights = models.resnet(8, 3, (8, 8, 1)).get_weights()  # seed-less initialisers: Keras's global generator
        return [random.random(), np.random.rand(), *np.array(keras.random.uniform((3,))), *weights[0].ravel()]

    keras.utils.set_random_seed(7)
    reference = draws()
    for _ in range(2):  # the second call takes the path that leaves TensorFlow's seed alone
        seed_everything(7)
        assert draws() == reference
    seed_everything(8)
    assert draws() != reference


def test_a_checkpoint_of_an_earlier_lrnoise_keeps_its_best_weights(tmp_path):
    """Checkpoints written before the best weights moved to .npz (best.weights.h5) resume with those weights."""
    from lrnoise import models, train as train_module

    previous, folder = tmp_path / "prev", tmp_path / "ckpt"
    previous.mkdir(), folder.mkdir()
    model = models.resnet(8, 3, (8, 8, 1))
    model.save_weights(previous / train_module.LEGACY_BEST_WEIGHTS)
    best = model.get_weights()
    model.set_weights([w + 1 for w in best])  # training went on after the best epoch
    model.save(previous / "last.keras")
    (previous / "state.json").write_text('{"epoch": 3, "best_val_loss": 0.5, "best_epoch": 2, "wait": 1}')
    restored, state = train_module._restore(previous, folder)
    assert state["best_epoch"] == 2
    for got, want in zip(train_module.saved_weights(folder / train_module.BEST_WEIGHTS), best):
        np.testing.assert_array_equal(got, want)
    for got, want in zip(restored.get_weights(), model.get_weights()):  # the model itself stays the last one
        np.testing.assert_array_equal(got, want)


def test_a_training_step_is_traced_once_and_trains_as_before():
    """build_state creates the optimizer slots and metric variables before fit: under TensorFlow the training
    step is then traced once instead of twice (issue 13), and the weights are those of a plain Keras fit."""
    from lrnoise import models, train as train_module

    ds = data.load("digits", val_fraction=0.1, seed=0)
    config = TrainConfig(dataset="digits", model="resnet20", optimizer="adam", batch_size=64, seed=1)

    def fit(prebuilt: bool):
        train_module.seed_everything(config.seed)
        model = models.resnet(8, ds.num_classes, ds.input_shape)
        train_module.compile_model(model, config, Execution())
        if prebuilt:
            train_module.build_state(model, ds)
        traces, step = [], model.train_step
        model.train_step = lambda batch: traces.append(1) or step(batch)  # runs once per trace, not per step
        stream, steps = data.training_stream(ds.x_train, ds.y_train, config.batch_size, config.seed)
        model.fit(stream, steps_per_epoch=steps, epochs=2, verbose=0)
        return len(traces), model.get_weights()

    traces, prebuilt = fit(True)
    _, plain = fit(False)
    if keras.backend.backend() == "tensorflow":
        assert traces == 1
    for a, b in zip(prebuilt, plain):
        np.testing.assert_array_equal(a, b)


@pytest.mark.skipif(keras.backend.backend() != "tensorflow", reason="TensorFlow's traced training step")
def test_an_optimizer_swap_traces_only_the_update_and_trains_as_keras_does():
    """share_forward_backward (issue 13): after swap_optimizer the forward and backward pass is not traced again,
    and before and after the swap the weights are those of Keras's own training step, bit for bit."""
    from lrnoise import models, train as train_module

    ds = data.load("digits", val_fraction=0.1, seed=0)
    first = TrainConfig(dataset="digits", model="resnet20", optimizer="adam", batch_size=64, seed=1)
    second = TrainConfig(**{**first.params(), "optimizer": "sgd"})
    execution = Execution(jit_compile=False)  # "auto" would be XLA on a GPU, which keeps Keras's own step

    def fit(shared: bool):
        train_module.seed_everything(first.seed)
        model = models.resnet(8, ds.num_classes, ds.input_shape)
        train_module.compile_model(model, first, execution)
        shared_step = vars(model).pop("train_step")  # Keras's own step unless it is put back
        if shared:
            object.__setattr__(model, "train_step", shared_step)
        weights = []
        for config in (first, second):
            if config is second:
                train_module.swap_optimizer(model, config, execution)
            train_module.build_state(model, ds)
            stream, steps = data.training_stream(ds.x_train, ds.y_train, config.batch_size, config.seed)
            model.fit(stream, steps_per_epoch=steps, epochs=1, verbose=0)
            assert type(model.optimizer).__name__.lower() == config.optimizer
            weights.append(model.get_weights())
        assert (model.train_step is shared_step) == shared  # kept across the swap
        return model, shared_step, weights

    model, shared_step, shared = fit(True)
    assert shared_step.forward_backward.experimental_get_tracing_count() == 1  # Adam's trace, called by SGD's
    _, _, keras_own = fit(False)
    for got, want in zip(shared, keras_own):
        for a, b in zip(got, want):
            np.testing.assert_array_equal(a, b)

    # compiled again outside compile_model: a new loss tracker, so Keras's own step takes over
    model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy", metrics=["accuracy"], jit_compile=False)
    stream, steps = data.training_stream(ds.x_train, ds.y_train, second.batch_size, second.seed)
    loss = model.fit(stream, steps_per_epoch=steps, epochs=1, verbose=0).history["loss"][0]
    assert "train_step" not in vars(model) and shared_step.forward_backward.experimental_get_tracing_count() == 1
    assert loss > 0.1  # counted by the new tracker, which the stale pass would not update


def test_cached_save_skipsets_save_the_same_model_and_are_found(tmp_path):
    """cache_save_skipsets stores Keras's own skip-sets under the key Keras reads them by (keras 3.15 writes them
    under another, so model.save rebuilt them for every object): the saved model is the same file content."""
    import json
    import threading
    import zipfile

    from lrnoise import models, train as train_module

    ds = data.load("digits", val_fraction=0.1, seed=0)
    config = TrainConfig(dataset="digits", model="resnet20", optimizer="nadam", batch_size=64, seed=1)

    def save_in_new_thread(path, cached: bool):  # Keras's global state is per thread: each starts uncached
        def save():
            if cached:
                train_module.cache_save_skipsets()
            model.save(path)
        thread = threading.Thread(target=save)
        thread.start()
        thread.join()

    train_module.seed_everything(config.seed)
    model = models.resnet(8, ds.num_classes, ds.input_shape)
    train_module.compile_model(model, config, Execution())
    train_module.build_state(model, ds)
    save_in_new_thread(tmp_path / "plain.keras", cached=False)
    save_in_new_thread(tmp_path / "cached.keras", cached=True)
    with zipfile.ZipFile(tmp_path / "plain.keras") as plain, zipfile.ZipFile(tmp_path / "cached.keras") as cached:
        assert plain.namelist() == cached.namelist()
        for name in plain.namelist():
            a, b = plain.read(name), cached.read(name)
            if name == "metadata.json":  # carries the save time
                a, b = ({k: v for k, v in json.loads(x).items() if k != "date_saved"} for x in (a, b))
            assert a == b, name
    restored = keras.models.load_model(tmp_path / "cached.keras")
    for got, want in zip(restored.get_weights() + restored.optimizer.variables, model.get_weights()
                         + model.optimizer.variables):
        np.testing.assert_array_equal(np.asarray(got), np.asarray(want))

    if keras.__version__.startswith("3.15"):  # the mismatch this works around, and the cache now found
        from keras.src.backend.common import global_state
        from keras.src.saving import saving_lib
        train_module.cache_save_skipsets()
        built = []
        original = keras.layers.Layer.__init__
        try:
            keras.layers.Layer.__init__ = lambda self, *a, **k: built.append(1) or original(self, *a, **k)
            assert saving_lib.get_attr_skipset("Layer") is global_state.get_global_attribute(
                "saving_attr_skiplist_Layer")
        finally:
            keras.layers.Layer.__init__ = original
        assert not built  # no reference Layer built: the set was found


TRIMMED_RUN = """
import hashlib, json, sys
import keras, numpy as np
from tensorflow.python.eager import context
from lrnoise import data, gradnoise, models, noise, train
if sys.argv[1] == "trim":
    train.trim_graph_rewrites()
config = train.TrainConfig(dataset="digits", model="resnet20", optimizer="adam", batch_size=64, epochs=2)
ds = train.load_data(config)
train.seed_everything(config.seed)
model = train.reusable_model(config, ds, train.Execution())
train.build_state(model, ds)
stream, steps = train.training_stream(config, ds)
model.fit(stream, steps_per_epoch=steps, epochs=2, verbose=0,
          validation_data=data.validation_data(ds.x_val, ds.y_val, train.EVAL_BATCH))
grad_noise = gradnoise.estimate(model, ds.x_train, ds.y_train, 64, 4, config.seed, 3, config.lr,
                                optimizer=model.optimizer, gradients=gradnoise.compiled_gradients(model))
evaluator = models.Evaluator(model, ds.x_test, ds.y_test)
arrays = model.get_weights()
for name in ("additive", "pcm"):  # the twin keeps each evaluation's last noisy draw: its outputs, bit for bit
    noise.evaluate(model, ds.x_test, ds.y_test, noise.NoiseConfig(noise=name, trials=1), evaluator=evaluator,
                   log=lambda *_: None)
    arrays.append(keras.ops.convert_to_numpy(evaluator.twin.predict_on_batch(ds.x_test.astype("float32"))))
from tensorflow.core.protobuf import config_pb2
used = config_pb2.ConfigProto.FromString(context.context().function_call_options.config_proto_serialized)
rewrites = used.graph_options.rewrite_options  # what the functions above ran with
print(json.dumps({"arrays": hashlib.sha256(b"".join(np.ascontiguousarray(a).tobytes() for a in arrays)).hexdigest(),
                  "grad_noise": grad_noise, "rewrites": [rewrites.meta_optimizer_iterations,
                                                         rewrites.memory_optimization, rewrites.layout_optimizer]}))
"""


@pytest.mark.e2e
@pytest.mark.skipif(keras.backend.backend() != "tensorflow", reason="TensorFlow's graph rewrites")
def test_trimmed_graph_rewrites_change_no_number():
    """trim_graph_rewrites (issue 13) skips Grappler passes that change no number in lrnoise's CPU graphs: a
    training (Adam, digits ResNet20), a gradient-noise estimate and additive and PCM evaluations give the same
    weights, estimates and noisy outputs bit for bit with Grappler's defaults (each in a fresh CPU-only
    process: the setting is process-wide and applies without a GPU only)."""
    from tensorflow.core.protobuf import rewriter_config_pb2

    def run(mode: str) -> dict:
        proc = subprocess.run([sys.executable, "-c", TRIMMED_RUN, mode], capture_output=True, text=True,
                              timeout=600, cwd=ROOT, env={**os.environ, "CUDA_VISIBLE_DEVICES": "-1"})
        assert proc.returncode == 0 and proc.stdout.strip(), proc.stderr[-2000:]
        return json.loads(proc.stdout.strip().splitlines()[-1])

    trimmed, default = run("trim"), run("default")
    config = rewriter_config_pb2.RewriterConfig
    assert trimmed["rewrites"] == [config.ONE, config.NO_MEM_OPT, config.OFF]  # what its functions ran with
    assert default["rewrites"] == [config.DEFAULT_NUM_ITERS, config.DEFAULT_MEM_OPT, config.DEFAULT]
    assert trimmed["grad_noise"] == default["grad_noise"] and "update_power" in trimmed["grad_noise"]
    assert trimmed["arrays"] == default["arrays"]
