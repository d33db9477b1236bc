"""Noise-injection training: the paper's weight noise in every training step, the update on the clean weights."""

import subprocess
import sys

import keras
import numpy as np
import pytest

from lrnoise.config import Execution, TrainConfig
from lrnoise.errors import LrnoiseError
from lrnoise.noise import noise_config
from lrnoise.training import build, networks, noise_training

ops = keras.ops

CONFIG = TrainConfig(
    dataset="digits",
    model="resnet8",
    optimizer="sgd",
    lr=0.05,
    batch_size=64,
    epochs=1,
    seed=3,
    patience=0,
    train_noise=0.1,
)


@pytest.fixture(scope="module")
def ds():
    return build.load_data(CONFIG)


def small_model(ds, optimizer="sgd"):
    """A depth-8 ResNet on digits, seeded and compiled: the same initial weights every call."""
    build.seed_everything(CONFIG.seed)
    mean, variance = networks.channel_stats(ds.x_train)
    model = networks.resnet(8, ds.num_classes, ds.input_shape, mean=mean, variance=variance)
    build.compile_model(model, TrainConfig(**{**CONFIG.params(), "optimizer": optimizer}), Execution())
    return model


def test_a_draw_is_eta_sigma_w_per_tensor_and_depends_on_seed_and_step_alone(ds):
    model = small_model(ds)
    weight_noise = noise_training.WeightNoise(model, 0.1, seed=3)
    assert [v.path for v in weight_noise.variables] == [v.path for v in noise_config.TARGETS["trainable"](model)]
    clean = [v.value for v in weight_noise.variables]
    first = [np.asarray(n) for n in weight_noise.draw(clean, 0)]
    for n, w in zip(first, clean):
        w = np.asarray(w)
        assert n.shape == w.shape
        if w.size >= 2000 and w.std() > 0:  # the large tensors: the sample sd is eta * sigma_w within 5 %
            assert n.std() == pytest.approx(0.1 * w.std(), rel=0.05)
            assert abs(n.mean()) < 0.1 * 0.1 * w.std()
    again = [np.asarray(n) for n in noise_training.WeightNoise(model, 0.1, seed=3).draw(clean, 0)]
    for a, b in zip(first, again):
        np.testing.assert_array_equal(a, b)  # (seed, step) alone: a resumed training draws the same noise
    later = [np.asarray(n) for n in weight_noise.draw(clean, 1)]
    other_seed = [np.asarray(n) for n in noise_training.WeightNoise(model, 0.1, seed=4).draw(clean, 0)]
    big = max(range(len(first)), key=lambda i: first[i].size)
    assert not np.allclose(first[big], later[big]) and not np.allclose(first[big], other_seed[big])


@pytest.mark.slow
def test_a_noisy_step_is_the_plain_step_at_the_noisy_weights_applied_to_the_clean_ones(ds):
    x, y = ds.x_train[:64].astype("float32"), ds.y_train[:64]
    noisy = small_model(ds)
    noise_training.configure(noisy, 0.1, seed=3)
    noisy.train_on_batch(x, y)

    by_hand = small_model(ds)  # the same initial weights
    clean = [np.asarray(v.value) for v in noise_training.WeightNoise(by_hand, 0.1, 3).variables]
    added = noise_training.WeightNoise(by_hand, 0.1, 3).draw([keras.ops.convert_to_tensor(w) for w in clean], 0)
    targets = noise_training.WeightNoise(by_hand, 0.1, 3).variables
    for variable, w, n in zip(targets, clean, added):
        variable.assign(w + np.asarray(n))
    by_hand.train_on_batch(x, y)  # Keras's own step at W + n: gradient, SGD update, BN statistics
    for variable, n in zip(targets, added):
        variable.assign(np.asarray(variable.value) - np.asarray(n))
    for a, b in zip(noisy.get_weights(), by_hand.get_weights()):
        np.testing.assert_allclose(a, b, rtol=0, atol=2e-6)
    moved = [not np.allclose(a, w) for a, w in zip([np.asarray(v.value) for v in targets], clean)]
    assert all(moved)  # every targeted tensor took its step


@pytest.mark.slow
def test_train_noise_zero_is_the_models_own_step_bit_for_bit(ds):
    x, y = ds.x_train[:64].astype("float32"), ds.y_train[:64]  # two steps
    plain = small_model(ds, "adam")
    plain.fit(x, y, batch_size=32, epochs=1, verbose=0, shuffle=False)
    switched = small_model(ds, "adam")
    noise_training.configure(switched, 0.05, seed=3)  # on, then off again before any step
    noise_training.configure(switched, 0.0, seed=3)
    assert "train_step" not in vars(switched)
    switched.fit(x, y, batch_size=32, epochs=1, verbose=0, shuffle=False)
    for a, b in zip(plain.get_weights(), switched.get_weights()):
        np.testing.assert_array_equal(a, b)  # (that eta > 0 changes the step: the noisy-step test above)


def test_train_noise_is_a_param_and_part_of_the_key_only_when_on():
    clean = TrainConfig()
    assert "train_noise" not in clean.params()  # every clean run keeps the params (and key) it always had
    noisy = TrainConfig(train_noise=0.05)
    assert (
        noisy.params()["train_noise"] == 0.05
        and TrainConfig.from_params({k: str(v) for k, v in noisy.params().items()}) == noisy
    )
    assert TrainConfig.from_params({k: str(v) for k, v in clean.params().items()}) == clean
    assert "-tn0.05-" in noisy.run_name and "-tn" not in clean.run_name


@pytest.mark.parametrize("eta", [-0.01, 1.5, float("nan")])
def test_a_bad_train_noise_is_refused_in_one_line(eta):
    with pytest.raises(LrnoiseError, match="train_noise must be an eta between 0"):
        TrainConfig(train_noise=eta).validate()


@pytest.mark.slow
def test_the_cli_refuses_a_bad_train_noise_before_any_run(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "lrnoise.cli", "train", "--train-noise", "-0.1"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=300,
        env={**__import__("os").environ, "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path}/m.db"},
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1].startswith("error: train_noise must be an eta between 0")
    assert not (tmp_path / "mlruns").exists()


def test_batch_norm_recomputed_on_the_clean_weights_is_the_average_of_batch_statistics(ds):
    model = small_model(ds)
    bns = [layer for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization)]
    first = bns[0]
    for layer in bns:  # statistics as noisy training might leave them
        layer.moving_mean.assign(ops.ones_like(layer.moving_mean) * 7.0)
    weights = [np.array(w) for w in model.trainable_weights]
    x = ds.x_train[:256].astype("float32")
    into_first = keras.Model(model.inputs, first.input)  # nothing before the first BN depends on training mode
    halves = [ops.convert_to_numpy(into_first(x[i : i + 128])).mean(axis=(0, 1, 2)) for i in (0, 128)]
    assert noise_training.recompute_batch_norm(model, x, batch_size=128) == len(bns)
    np.testing.assert_allclose(ops.convert_to_numpy(first.moving_mean), np.mean(halves, axis=0), rtol=1e-4, atol=1e-5)
    assert all(np.array_equal(a, np.array(b)) for a, b in zip(weights, model.trainable_weights))
    assert {layer.momentum for layer in bns} == {0.99}  # the layers' own momentum again
