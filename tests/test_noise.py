"""Noise injection and the paper's eq. 7-9: exactness, statistics, reproducibility, tracking, bad input."""

import keras
import mlflow
import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from lrnoise import NOISE_SEMANTICS, names
from lrnoise.cli import app
from lrnoise.config import Execution, TrainConfig
from lrnoise.data import loading
from lrnoise.noise import injection, noise_config, scoring
from lrnoise.noise.evaluation import noise_eval
from lrnoise.noise.noise_config import NoiseConfig
from lrnoise.report import evaluation_figure
from lrnoise.store import session
from lrnoise.training import networks
from lrnoise.training.train import train

from support.commands import mlflow_run
from support.stores import run_statuses


@pytest.fixture(scope="module")
def digits():
    return loading.load("digits")


@pytest.fixture(scope="module")
def trained(digits):
    """A small ResNet fitted on digits in-process (no tracking): accurate enough that noise can hurt it."""
    keras.utils.set_random_seed(0)
    mean, var = networks.channel_stats(digits.x_train)
    model = networks.resnet(8, 10, digits.input_shape, mean=mean, variance=var)
    model.compile(keras.optimizers.Adam(0.02), "sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(digits.x_train.astype("float32"), digits.y_train, epochs=3, batch_size=64, verbose=0)
    assert scoring.Evaluator(model, digits.x_test, digits.y_test)() > 0.8
    return model


def snapshot(model):
    return [np.array(w) for w in model.get_weights()]


def test_injected_noise_has_zero_mean_and_eta_sigma_w(trained):
    injector = injection.injector_for(noise_config.PAPER, trained)
    eta = 0.2
    noisy = injector.draw(eta, injection.draw_seed(0, eta, 0))
    checked = 0
    for path in injector.targets:
        clean = np.array(injector.clean[path])
        assert noisy[path].shape == clean.shape
        if clean.size < 2000:
            continue
        delta = (np.array(noisy[path]) - clean).ravel()
        sigma = eta * clean.std()
        assert abs(delta.std() / sigma - 1) < 6 / np.sqrt(2 * clean.size)  # ~6 standard errors of a std
        assert abs(delta.mean()) < 6 * sigma / np.sqrt(clean.size)
        checked += 1
    assert checked >= 3
    untouched = [p for p in injector.clean if p not in injector.targets]
    assert untouched and all(noisy[p] is injector.clean[p] for p in untouched)


def test_multiplicative_noise_is_relative(trained):
    injector = injection.injector_for(NoiseConfig("multiplicative"), trained)
    big = max(injector.targets, key=lambda p: int(np.prod(injector.clean[p].shape)))
    clean = np.array(injector.clean[big])
    noisy = np.array(injector.draw(0.3, 1)[big])
    ratio = noisy[clean != 0] / clean[clean != 0] - 1
    assert abs(ratio.std() / 0.3 - 1) < 0.05 and abs(ratio.mean()) < 0.02


@pytest.mark.slow
def test_folded_evaluator_computes_the_same_function(digits):
    """BN folded into the convs gives the model's own predictions, noisy weights included."""
    for shortcut in ("A", "B"):
        model = networks.resnet(8, 10, digits.input_shape, shortcut=shortcut)
        rng = np.random.RandomState(0)
        for v in model.weights:  # BN statistics away from their initial values
            if v.path.endswith(("gamma", "moving_variance")):
                v.assign(rng.uniform(0.5, 1.5, v.shape))
            elif v.path.endswith(("beta", "moving_mean")):
                v.assign(rng.normal(0, 0.3, v.shape))
        x = digits.x_test[:64].astype("float32")
        evaluator = scoring.Evaluator(model, x, np.zeros(64))
        assert len(evaluator.pairs) == (7 if shortcut == "A" else 9)
        np.testing.assert_allclose(
            evaluator.twin.predict(x, verbose=0), model.predict(x, verbose=0), rtol=1e-4, atol=1e-6
        )
        noisy = injection.injector_for(NoiseConfig(targets="all"), model).draw(0.2, 3)
        evaluator.load(noisy)
        copy = keras.models.clone_model(model)
        for v in copy.weights:
            v.assign(noisy[v.path])
        np.testing.assert_allclose(
            evaluator.twin.predict(x, verbose=0), copy.predict(x, verbose=0), rtol=1e-4, atol=1e-6
        )


def test_models_of_one_architecture_share_one_twin_whatever_their_optimizer(digits):
    """A sweep's models differ in learning rate (compile config) only: one twin, traced once, serves them all."""
    x = digits.x_test[:8].astype("float32")
    first, second = (networks.resnet(8, 10, digits.input_shape) for _ in range(2))
    first.compile(keras.optimizers.Adam(0.001), "sparse_categorical_crossentropy")
    second.compile(keras.optimizers.SGD(0.1), "sparse_categorical_crossentropy")
    assert scoring.Evaluator(first, x, np.zeros(8)).twin is scoring.Evaluator(second, x, np.zeros(8)).twin
    other = networks.resnet(8, 10, digits.input_shape, shortcut="B")
    assert scoring.Evaluator(other, x, np.zeros(8)).twin is not scoring.Evaluator(first, x, np.zeros(8)).twin


def test_targets(trained):
    paths = {name: [v.path for v in noise_config.TARGETS[name](trained)] for name in noise_config.TARGETS}
    assert not any(p.startswith(names.NORMALIZATION_LAYER) for ps in paths.values() for p in ps)
    assert not any("moving" in p for p in paths["trainable"])
    assert any(p.endswith("gamma") for p in paths["trainable"]) and any(p.endswith("bias") for p in paths["trainable"])
    assert all(p.endswith("kernel") for p in paths["kernels"]) and len(paths["kernels"]) == 8
    assert set(paths["trainable"]) < set(paths["all"]) and any("moving_mean" in p for p in paths["all"])


def test_weights_restored_bit_for_bit(trained, digits):
    before = snapshot(trained)
    injection.evaluate(
        trained,
        digits.x_test,
        digits.y_test,
        NoiseConfig(levels=(0.1, 0.4), trials=2, targets="all"),
        log=lambda s: None,
    )
    for a, b in zip(before, snapshot(trained)):
        np.testing.assert_array_equal(a, b)
    evaluator = scoring.Evaluator(trained, digits.x_test, digits.y_test)
    clean = evaluator()
    injector = injection.injector_for(noise_config.PAPER, trained, evaluator)
    assert injection.noisy_accuracy(evaluator, injector, 0.5, 0, 0)[0] != clean
    assert injection.noisy_accuracy(evaluator, injector, 0.0, 0, 0)[0] == clean  # back to the clean weights


def test_an_evaluator_shared_by_evaluations_gives_their_own_results(trained, digits):
    """A study hands training's a_0 Evaluator to each noise evaluation; the one before leaves its last
    noisy draw in the twin, which must not leak into the next evaluation's a_0 or draws."""
    quiet = dict(log=lambda s: None)
    config = NoiseConfig(levels=(0.1, 0.3), trials=2)
    alone = injection.evaluate(trained, digits.x_test, digits.y_test, config, **quiet)
    shared = scoring.Evaluator(trained, digits.x_test, digits.y_test)
    injection.evaluate(trained, digits.x_test, digits.y_test, NoiseConfig("pcm", trials=1), evaluator=shared, **quiet)
    again = injection.evaluate(trained, digits.x_test, digits.y_test, config, evaluator=shared, **quiet)
    assert again.baseline_accuracy == alone.baseline_accuracy
    pd.testing.assert_frame_equal(again.draws, alone.draws)


def test_eta_zero_is_exact_and_the_largest_eta_costs_most_accuracy(trained, digits):
    result = injection.evaluate(
        trained, digits.x_test, digits.y_test, NoiseConfig(levels=(0.0, 1.0), trials=3), log=lambda s: None
    )
    by_eta = result.summary.set_index("level")
    assert by_eta.loc[0.0, "normalized_accuracy"] == 1.0
    assert by_eta.loc[1.0, "accuracy"] < 0.5  # eta 1, noise as large as each tensor: most accuracy gone
    assert result.avg_normalized_accuracy == pytest.approx((1.0 + by_eta.loc[1.0, "normalized_accuracy"]) / 2)


def test_same_seed_same_draws_other_seed_other_draws(trained, digits):
    def draws(seed):
        return (
            injection.evaluate(
                trained,
                digits.x_test,
                digits.y_test,
                NoiseConfig(levels=(0.3,), trials=4, seed=seed),
                log=lambda s: None,
            )
            .draws["accuracy"]
            .to_numpy()
        )

    np.testing.assert_array_equal(draws(1), draws(1))
    assert not np.array_equal(draws(1), draws(2))
    injector = injection.injector_for(noise_config.PAPER, trained)
    first = injector.targets[0]
    got = [np.array(injector.draw(0.1, injection.draw_seed(seed, 0.1, 0))[first]) for seed in (5, 5, 6)]
    np.testing.assert_array_equal(got[0], got[1])
    assert not np.array_equal(got[0], got[2])
    assert injection.draw_seed(5, 0.1, 0) != injection.draw_seed(5, 0.1, 1) != injection.draw_seed(5, 0.2, 1)


def test_trials_auto_stops_on_ci_or_cap(trained, digits):
    loose = injection.evaluate(
        trained,
        digits.x_test,
        digits.y_test,
        NoiseConfig(levels=(0.2,), trials="auto", ci_target=0.99),
        log=lambda s: None,
    )
    assert len(loose.draws) == noise_config.MIN_AUTO_TRIALS
    tight = injection.evaluate(
        trained,
        digits.x_test,
        digits.y_test,
        NoiseConfig(levels=(0.3,), trials="auto", ci_target=1e-9, max_trials=6),
        log=lambda s: None,
    )
    assert len(tight.draws) == 6


def test_summary_statistics_follow_equations():
    draws = pd.DataFrame(
        {"level": [0.1, 0.1, 0.1, 0.2, 0.2], "trial": [0, 1, 2, 0, 1], "accuracy": [0.8, 0.7, 0.9, 0.5, 0.3]}
    )
    result = injection.NoiseResult(0.9, draws)
    s = result.summary.set_index("level")
    assert s.loc[0.1, "accuracy"] == pytest.approx(0.8) and s.loc[0.2, "accuracy"] == pytest.approx(0.4)
    assert s.loc[0.1, "normalized_accuracy"] == pytest.approx(0.8 / 0.9)
    assert s.loc[0.1, "accuracy_std"] == pytest.approx(0.1)
    assert s.loc[0.1, "accuracy_ci95"] == pytest.approx(4.302653 * 0.1 / np.sqrt(3), rel=1e-6)
    assert result.avg_normalized_accuracy == pytest.approx((0.8 / 0.9 + 0.4 / 0.9) / 2)
    assert [noise_config.level_label("eta", e) for e in (0.01, 0.1, 0.025, 0.3, 0.07)] == ["1", "10", "2.5", "30", "7"]


@pytest.fixture
def train_run(store):
    return train(
        TrainConfig(dataset="digits", model="resnet8", lr=0.003, epochs=1, batch_size=64, patience=0),
        execution=Execution(grad_noise_batches=0),
    )


@pytest.mark.e2e
def test_tracked_noise_eval_metrics_match_logged_draws(train_run):
    config = NoiseConfig(levels=(0.05, 0.1, 0.3), trials=3, seed=7)
    eval_id, result = noise_eval(config, run_id=train_run.run_id, draw=evaluation_figure.write_noise_curve)
    run = mlflow.get_run(eval_id)
    assert run.info.status == "FINISHED"
    assert run.data.tags["mlflow.parentRunId"] == train_run.run_id == run.data.tags["source_run_id"]
    assert run.data.params == {
        "noise.noise": "additive",
        "noise.levels": "0.05,0.1,0.3",
        "noise.targets": "trainable",
        "noise.fold_bn": "False",
        "noise.options": "none",
        "noise.trials": "3",
        "noise.seed": "7",
    }
    assert run.data.tags["lrnoise.noise_config"] == config.key and run.data.tags["lrnoise.config"] == config.run_key
    assert run.data.tags[names.SEMANTICS] == str(NOISE_SEMANTICS)
    folder = mlflow.artifacts.download_artifacts(run_id=eval_id)
    draws = pd.read_csv(f"{folder}/draws.csv")
    a0 = run.data.metrics["baseline_accuracy"]
    assert a0 == pytest.approx(train_run.baseline_accuracy)  # same evaluation code as training
    per_eta = draws.groupby("level")["accuracy"]
    for eta, pct in ((0.05, "5"), (0.1, "10"), (0.3, "30")):
        assert run.data.metrics[f"accuracy_eta_{pct}"] == pytest.approx(per_eta.mean()[eta], abs=1e-12)
        assert run.data.metrics[f"accuracy_std_eta_{pct}"] == pytest.approx(per_eta.std()[eta], abs=1e-12)
        assert run.data.metrics[f"normalized_accuracy_eta_{pct}"] == pytest.approx(per_eta.mean()[eta] / a0)
    assert run.data.metrics["avg_normalized_accuracy"] == pytest.approx((per_eta.mean() / a0).mean())
    trained_run = mlflow.get_run(train_run.run_id)  # the summary also sits on the training run, under the
    prefix = f"{config.name}/"  # configuration's name: it is not the paper's, so it never takes the paper's names
    assert trained_run.data.metrics[prefix + "avg_normalized_accuracy"] == run.data.metrics["avg_normalized_accuracy"]
    assert prefix + "normalized_accuracy_eta_10" in trained_run.data.metrics
    assert "avg_normalized_accuracy" not in trained_run.data.metrics
    png = open(f"{folder}/noise_curve.png", "rb").read()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000


@pytest.mark.e2e
def test_model_uri_inputs_find_the_training_run(train_run):
    client = mlflow.tracking.MlflowClient()
    client.set_registered_model_alias("lrnoise-digits-resnet8", "champion", train_run.model_version)
    for uri in ("models:/lrnoise-digits-resnet8/1", "models:/lrnoise-digits-resnet8@champion", train_run.model_uri):
        eval_id, _ = noise_eval(NoiseConfig(levels=(0.1,), trials=1), model_uri=uri)
        assert mlflow.get_run(eval_id).data.tags["source_run_id"] == train_run.run_id


def _cli(args):
    return CliRunner().invoke(app, ["noise-eval", *args])


@pytest.mark.e2e
def test_bad_input(train_run):
    cases = [
        (["--run-id", train_run.run_id, "--etas", "-0.1"], "level eta must be a fraction from 0 to 1"),
        (["--run-id", train_run.run_id, "--noise", "pcm", "--levels", "-5"], "level t must be a finite number"),
        (["--run-id", train_run.run_id, "--noise", "thermal"], "unknown noise 'thermal'"),
        (["--run-id", train_run.run_id, "--noise-option", "g_max=10"], "unknown option 'g_max' for noise additive"),
        (["--run-id", train_run.run_id, "--trials", "0"], "trials must be an integer >= 1 or 'auto'"),
        (["--run-id", "0123456789abcdef0123456789abcdef"], "no run"),
        (["--model-uri", "models:/no-such-model/3"], "cannot find model"),
        (["--model-uri", "bogus"], "must look like models:/"),
        (["--run-id", train_run.run_id, "--targets", "weights"], "trainable, kernels, all"),
        ([], "exactly one of --run-id"),
    ]
    for args, message in cases:
        result = _cli(args)
        lines = result.output.strip().splitlines()
        assert result.exit_code == 2 and len(lines) == 1 and message in lines[0], (args, result.output)
    # a finished training run without a model
    exp = session.ensure_experiment("lrnoise")
    bare = mlflow.tracking.MlflowClient().create_run(exp, tags={names.KIND: "train"})
    mlflow.tracking.MlflowClient().set_terminated(bare.info.run_id)
    result = _cli(["--run-id", bare.info.run_id])
    assert result.exit_code == 2 and "has no logged model" in result.output
    assert "RUNNING" not in run_statuses().values()


@pytest.mark.e2e
def test_mlflow_run_noise_eval_entry_point_evaluates_where_the_report_looks(train_run):
    """Without --experiment-name, `mlflow run` makes its run in Default: the evaluation goes into the training
    run's experiment all the same (where `report` finds it), and the entry point's run points at it."""
    proc = mlflow_run("noise_eval", f"run_id={train_run.run_id}", "levels=0.1, 0.2", "trials=2", experiment=None)
    assert proc.returncode == 0, proc.stderr[-3000:]
    evals = [
        r
        for r in mlflow.search_runs(experiment_names=["lrnoise"], output_format="list")
        if r.data.tags.get(names.KIND) == "noise_eval"
    ]
    assert len(evals) == 1 and evals[0].info.status == "FINISHED"
    assert evals[0].data.tags["mlflow.parentRunId"] == train_run.run_id
    assert "normalized_accuracy_eta_20" in evals[0].data.metrics
    assert set(run_statuses().values()) == {"FINISHED"}
    (entry,) = mlflow.search_runs(experiment_names=["Default"], output_format="list")
    assert entry.data.tags[names.EVALUATION_RUN_ID] == evals[0].info.run_id and entry.info.status == "FINISHED"


def test_nonfinite_outputs_count_as_wrong_never_as_class_zero(digits):
    model = networks.resnet(8, 10, digits.input_shape)
    for v in model.weights:
        if v.path == "classifier/kernel":
            v.assign(np.full(v.shape, np.nan, dtype="float32"))
    zeros = np.zeros(len(digits.x_test), dtype=int)  # argmax of a NaN row would be 0: every label "hit"
    assert scoring.Evaluator(model, digits.x_test, zeros).accuracy() == (0.0, True)


def test_nonfinite_draws_are_counted(trained, digits, monkeypatch):
    """A draw whose outputs held NaN / inf is counted (and its accuracy counts those rows as wrong)."""
    evaluator = scoring.Evaluator(trained, digits.x_test, digits.y_test)
    real = scoring.Evaluator.load

    def overflowing(self, values):  # stands in for a draw that overflowed the classifier
        values = dict(values)
        values["classifier/kernel"] = values["classifier/kernel"] * np.float32(np.inf)
        real(self, values)

    injector = injection.injector_for(noise_config.PAPER, trained, evaluator)
    monkeypatch.setattr(scoring.Evaluator, "load", overflowing)
    accuracy, nonfinite = injection.noisy_accuracy(evaluator, injector, 0.1, 0, 0)
    assert nonfinite and accuracy < 0.2
    draws = pd.DataFrame(
        {"level": [0.1, 0.1, 0.2], "trial": [0, 1, 0], "accuracy": [0.0, 0.5, 0.4], "nonfinite": [True, False, False]}
    )
    assert injection.NoiseResult(0.9, draws).nonfinite_draws == 1


@pytest.mark.parametrize("noise_name, level", [("additive", 0.1), ("multiplicative", 0.1), ("pcm", 86400.0)])
def test_every_noise_model_and_fold_bn_through_the_evaluation(trained, digits, noise_name, level):
    for fold_bn in (False, True):
        config = NoiseConfig(noise_name, levels=(level,), trials=2, fold_bn=fold_bn)
        result = injection.evaluate(trained, digits.x_test, digits.y_test, config, log=lambda s: None)
        assert 0.0 < result.summary["normalized_accuracy"].iloc[0] <= 1.2 and result.nonfinite_draws == 0
    evaluator = scoring.Evaluator(trained, digits.x_test, digits.y_test)
    folded = injection.injector_for(NoiseConfig(noise_name, fold_bn=True), trained, evaluator)
    assert all(p.endswith(("kernel", "bias")) for p in folded.targets)  # the folded twin's kernels (and biases)
    assert any(p.endswith("bias") and "conv" in p for p in folded.targets) or noise_name == "pcm"


def test_noise_config_keys_names_and_validation():
    paper_config = NoiseConfig()
    assert paper_config.name == "additive-paper" and paper_config.is_paper
    assert NoiseConfig(levels=noise_config.PAPER_ETAS, targets="trainable") == paper_config  # defaults resolved
    assert NoiseConfig(trials=30).key == paper_config.key != NoiseConfig(trials=30).run_key  # precision only
    assert NoiseConfig("pcm").name == "pcm-1s-1y" and NoiseConfig("pcm").targets == "kernels"
    other = NoiseConfig(levels=(0.1, 0.3))
    assert other.key != paper_config.key and other.name.startswith("additive-eta10-30-")
    assert NoiseConfig("pcm", options=(("g_max", 25.0),)).key == NoiseConfig("pcm").key
    assert NoiseConfig("pcm", options=(("drift_compensation", False),)).key != NoiseConfig("pcm").key
    assert NoiseConfig.from_dict(NoiseConfig("pcm", fold_bn=True).to_dict()) == NoiseConfig("pcm", fold_bn=True)
    for bad, message in (
        (dict(levels=(0.1, 0.1)), "repeat"),
        (dict(trials=0), "trials must be"),
        (dict(targets="weights"), "unknown targets"),
        (dict(trials="auto", ci_target=5.0), "0 < ci_target"),
    ):
        with pytest.raises(injection.LrnoiseError, match=message):
            NoiseConfig(**bad).validate()


def test_a_model_at_zero_clean_accuracy_normalises_to_nan_not_an_error():
    """A model evaluated with --force although it learned nothing (a_0 = 0): eq. 8 has nothing to divide by."""
    draws = pd.DataFrame({"level": [0.1, 0.1], "trial": [0, 1], "accuracy": [0.0, 0.1]})
    summary = injection.summarize(draws, 0.0)
    assert summary["normalized_accuracy"].isna().all() and summary["accuracy"].iloc[0] == pytest.approx(0.05)
    assert injection.summarize(draws, 0.5)["normalized_accuracy"].iloc[0] == pytest.approx(0.1)
