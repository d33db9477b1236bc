"""Gradient-noise estimator (eq. 1-3): brute-force C, batch sampling, no side effects, adaptive update noise,
the training callback, and the same numbers under the torch (and jax) backends.

Run as a script (`python tests/test_gradnoise.py WEIGHTS DATA`) it prints estimate(...) as JSON under whatever
KERAS_BACKEND is set: the cross-backend test uses that.
"""

import json
import os
import random
import subprocess
import sys

import keras
import numpy as np
import pytest

from lrnoise.errors import LrnoiseError
from lrnoise.training import gradnoise, networks

CROSS_BACKEND = {"batch_size": 16, "k": 6, "seed": 3, "epoch": 2, "lr": 0.1}  # estimate(...) in both processes


def dense_model(inputs=6, hidden=8, classes=3):
    """Tiny net without batch norm: a batch gradient is exactly the mean of per-example gradients."""
    x = keras.Input((inputs,))
    h = keras.layers.Dense(hidden, activation="tanh")(x)
    return keras.Model(x, keras.layers.Dense(classes, activation="softmax")(h))


def bn_model():
    return networks.resnet(8, 4, (8, 8, 1))


def random_data(n, shape, classes, seed):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, *shape)).astype("float32"), rng.integers(0, classes, n)


def values(variables) -> list[np.ndarray]:
    return [np.array(v.numpy()) for v in variables]


def test_spread_is_the_unbiased_trace_of_the_covariance():
    rows = np.random.default_rng(0).normal(size=(7, 5)) * np.arange(1, 6)
    assert gradnoise.spread(rows) == pytest.approx(np.var(rows, axis=0, ddof=1).sum(), rel=1e-12)


def test_estimate_matches_brute_force_per_example_variance():
    n, batch, k = 256, 64, 200
    keras.utils.set_random_seed(0)
    model = dense_model()
    x, y = random_data(n, (6,), 3, seed=1)
    gradients = gradnoise.gradient_function(model)
    per_example = np.stack([gradnoise.flatten(gradients(x[i : i + 1], y[i : i + 1])) for i in range(n)])  # N x P
    full = per_example.mean(axis=0)  # g_D
    c_exact = np.mean(np.sum((per_example - full) ** 2, axis=1))  # C = mean_i ||g_i - g_D||^2
    np.testing.assert_allclose(gradnoise.flatten(gradients(x, y)), full, atol=1e-6)  # no BN: mean of g_i

    got = gradnoise.estimate(
        model, x, y, batch, k, seed=5, epoch=1, lr=0.1, gradients=gradnoise.stacked_gradient_function(model)
    )
    # the K terms whose mean is C_hat, for the standard error; batches drawn without replacement from N
    grads = np.stack(
        [gradnoise.flatten(gradients(x[idx], y[idx])) for idx in gradnoise.noise_batches(n, batch, k, seed=5, epoch=1)]
    )
    terms = batch * np.sum((grads - grads.mean(axis=0)) ** 2, axis=1) * k / (k - 1)
    assert got[gradnoise.GRAD_NOISE_C] == pytest.approx(terms.mean(), rel=1e-5)  # float32 on the device
    expected = c_exact * (n - batch) / (n - 1)  # E||g_B - g_D||^2 = C/B (N-B)/(N-1)
    standard_error = terms.std(ddof=1) / np.sqrt(k)
    assert abs(got[gradnoise.GRAD_NOISE_C] - expected) < 4 * standard_error
    assert 4 * standard_error < 0.25 * expected  # tight enough to tell the (N-B)/(N-1) = 0.75 factor apart
    assert got[gradnoise.GRAD_NOISE_POWER] == pytest.approx(0.1**2 * got[gradnoise.GRAD_NOISE_C] / batch, rel=1e-12)
    assert gradnoise.UPDATE_NOISE_POWER not in got  # no optimizer given


def global_draws() -> list[float]:
    """The next numbers of Python's, NumPy's and Keras's global generators (tests that nothing drew from them)."""
    return [random.random(), np.random.rand(), *np.array(keras.random.uniform((3,)))]


def test_noise_batches_are_a_pure_function_of_seed_and_epoch():
    keras.utils.set_random_seed(11)
    reference = global_draws()
    keras.utils.set_random_seed(11)
    first = gradnoise.noise_batches(100, 10, 4, seed=3, epoch=2)
    assert global_draws() == reference
    again = gradnoise.noise_batches(100, 10, 4, seed=3, epoch=2)
    assert all(np.array_equal(a, b) for a, b in zip(first, again))
    assert len(first) == 4 and all(len(set(b)) == 10 and b.min() >= 0 and b.max() < 100 for b in first)
    assert len({tuple(b) for b in first}) == 4
    for other in (gradnoise.noise_batches(100, 10, 4, seed=3, epoch=3), gradnoise.noise_batches(100, 10, 4, 4, 2)):
        assert not any(np.array_equal(a, b) for a, b in zip(first, other))


@pytest.mark.parametrize("compiled", [False, True])
def test_gradients_are_in_training_mode_and_write_nothing(compiled):
    import tensorflow as tf  # the reference gradient: the ordinary stateful training-mode call

    keras.utils.set_random_seed(0)
    model = bn_model()
    x, y = random_data(16, (8, 8, 1), 4, seed=2)
    before = values(model.weights)
    if compiled:
        grads = gradnoise.gradient_function(model)(x, y)
    else:
        grads = gradnoise.batch_gradients(model, x, y)
    assert all(np.array_equal(a, b) for a, b in zip(before, values(model.weights)))  # BN statistics included
    with tf.GradientTape() as tape:
        loss = keras.ops.mean(keras.losses.sparse_categorical_crossentropy(y, model(x, training=True)))
    reference = tape.gradient(loss, [v.value for v in model.trainable_variables])
    np.testing.assert_allclose(gradnoise.flatten(grads), gradnoise.flatten(reference), rtol=1e-4, atol=1e-6)
    moving = [i for i, v in enumerate(model.weights) if "moving_mean" in v.path]
    assert moving and not np.array_equal(before[moving[0]], model.weights[moving[0]].numpy())  # the stateful one did


@pytest.mark.parametrize("compiled", [False, True])
def test_stacked_gradients_are_each_minibatch_gradient_bit_for_bit(compiled):
    """The K gradients of one estimate, computed in one traced call (tf.map_fn), equal gradient_function's one
    minibatch at a time, exactly; nothing is written (BN statistics included)."""
    keras.utils.set_random_seed(0)
    model = bn_model()
    x, y = random_data(48, (8, 8, 1), 4, seed=4)
    xs, ys = x.reshape(3, 16, 8, 8, 1), y.reshape(3, 16)
    before = values(model.weights)
    rows = gradnoise.stacked_gradient_function(model, compiled=compiled)(xs, ys)
    assert all(np.array_equal(a, b) for a, b in zip(before, values(model.weights)))
    one_at_a_time = gradnoise.gradient_function(model, compiled=compiled)
    expected = np.stack([gradnoise.flatten(one_at_a_time(xs[k], ys[k]), np.float32) for k in range(3)])
    trainable = sum(int(np.prod(v.shape)) for v in model.trainable_variables)
    assert rows.dtype == np.float32 and rows.shape == (3, trainable)
    assert np.array_equal(rows, expected)
    assert not np.array_equal(rows[0], rows[1])  # three different minibatches


def adam_moments(optimizer, variables, slot):
    """Adam's slot (momentum | velocity) of every variable, found by Keras's naming: <variable path>_<slot>."""
    by_name = {v.name: np.array(v.numpy(), np.float64) for v in optimizer.variables}
    return np.concatenate([by_name[f"{v.path.replace('/', '_')}_{slot}"].ravel() for v in variables])


def test_adam_update_noise_matches_a_numpy_recomputation():
    keras.utils.set_random_seed(0)
    model, optimizer = dense_model(), keras.optimizers.Adam(0.01)
    model.compile(optimizer, "sparse_categorical_crossentropy")
    x, y = random_data(96, (6,), 3, seed=3)
    model.train_on_batch(x[:32], y[:32])  # nonzero moments, iteration 1
    before = values(model.weights + optimizer.variables)
    got = gradnoise.estimate(model, x, y, 16, 5, seed=1, epoch=4, lr=0.01, optimizer=optimizer)
    assert all(np.array_equal(a, b) for a, b in zip(before, values(model.weights + optimizer.variables)))

    grads = np.stack(
        [
            np.concatenate(
                [np.asarray(g, np.float64).ravel() for g in gradnoise.batch_gradients(model, x[idx], y[idx])]
            )
            for idx in gradnoise.noise_batches(96, 16, 5, seed=1, epoch=4)
        ]
    )
    m = adam_moments(optimizer, model.trainable_variables, "momentum")
    v = adam_moments(optimizer, model.trainable_variables, "velocity")
    assert np.abs(m).max() > 0 and int(optimizer.iterations.numpy()) == 1
    t, b1, b2, eps = 2, 0.9, 0.999, 1e-7
    m_hat = (b1 * m + (1 - b1) * grads) / (1 - b1**t)
    v_hat = (b2 * v + (1 - b2) * grads**2) / (1 - b2**t)
    steps = m_hat / (np.sqrt(v_hat) + eps / np.sqrt(1 - b2**t))  # Keras puts eps outside the bias correction
    expected = 0.01**2 * np.sum((steps - steps.mean(axis=0)) ** 2) / 4
    assert got[gradnoise.UPDATE_NOISE_POWER] == pytest.approx(expected, rel=1e-5)  # float32 vs float64
    assert got[gradnoise.GRAD_NOISE_POWER] == pytest.approx(0.01**2 * np.var(grads, axis=0, ddof=1).sum(), rel=1e-5)


@pytest.mark.parametrize(
    "make",
    [
        lambda: keras.optimizers.Adam(0.01),
        lambda: keras.optimizers.Adam(0.01, amsgrad=True),
        lambda: keras.optimizers.Nadam(0.01),
        lambda: keras.optimizers.Adamax(0.01),
    ],
    ids=["adam", "amsgrad", "nadam", "adamax"],
)
def test_update_directions_are_the_optimizers_real_step(make):
    keras.utils.set_random_seed(0)
    model, optimizer = dense_model(), make()
    model.compile(optimizer, "sparse_categorical_crossentropy")
    x, y = random_data(64, (6,), 3, seed=4)
    model.train_on_batch(x[:32], y[:32])
    model.train_on_batch(x[32:], y[32:])
    for batch in (slice(0, 16), slice(16, 32)):  # twice: the second reads the moments the first step wrote
        grads = gradnoise.batch_gradients(model, x[batch], y[batch])
        direction = keras.ops.convert_to_numpy(
            gradnoise.update_directions(optimizer, model.trainable_variables, gradnoise.flatten(grads)[None])[0]
        )
        before = gradnoise.flatten(model.trainable_variables)
        optimizer.apply(grads, model.trainable_variables)  # the real step: w <- w - lr * direction
        np.testing.assert_allclose(
            before - gradnoise.flatten(model.trainable_variables), 0.01 * direction, rtol=1e-4, atol=1e-7
        )


@pytest.mark.parametrize(
    "optimizer",
    [
        keras.optimizers.SGD(0.1),
        keras.optimizers.SGD(0.1, momentum=0.9),
        keras.optimizers.SGD(0.1, momentum=0.9, nesterov=True),
    ],
)
def test_sgd_has_no_update_noise_key(optimizer):
    model = dense_model()
    x, y = random_data(32, (6,), 3, seed=5)
    got = gradnoise.estimate(model, x, y, 8, 3, seed=0, epoch=1, lr=0.1, optimizer=optimizer)
    assert set(got) == {gradnoise.GRAD_NOISE_C, gradnoise.GRAD_NOISE_POWER} and got[gradnoise.GRAD_NOISE_C] > 0


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda m, x, y: gradnoise.estimate(m, x, y, 8, 1, 0, 1, 0.1), "k >= 2"),
        (lambda m, x, y: gradnoise.estimate(m, x, y, 64, 2, 0, 1, 0.1), "batch size"),
        (lambda m, x, y: gradnoise.estimate(m, x, y, 8, 2, 0, 1, 0.1, optimizer=keras.optimizers.RMSprop()), "RMSprop"),
        (
            lambda m, x, y: gradnoise.estimate(m, x, y, 8, 2, 0, 1, 0.1, optimizer=keras.optimizers.Adam(clipnorm=1.0)),
            "clipping",
        ),
        (lambda m, x, y: gradnoise.GradNoiseCallback(x, y, 8, 1, 0, 0.1, print), "0 \\(off\\) or >= 2"),
    ],
)
def test_bad_arguments_raise_one_line_errors(call, message):
    x, y = random_data(32, (6,), 3, seed=6)
    with pytest.raises(LrnoiseError, match=message):
        call(dense_model(), x, y)


def fit_weights(callbacks, epochs=2) -> list[np.ndarray]:
    """Weights and optimizer state after training a BN model from seed 7, then the global generators' next draws."""
    keras.utils.set_random_seed(7)
    x, y = random_data(64, (8, 8, 1), 4, seed=8)
    model = bn_model()
    model.compile(keras.optimizers.Adam(0.01), "sparse_categorical_crossentropy")
    model.fit(x, y, batch_size=16, epochs=epochs, shuffle=True, verbose=0, callbacks=[cb(x, y) for cb in callbacks])
    return values(model.weights + model.optimizer.variables) + [np.array(global_draws())]


@pytest.mark.e2e
def test_callback_logs_every_epoch_and_leaves_training_bit_identical():
    logged, made = [], []

    def with_noise(x, y):
        made.append(
            gradnoise.GradNoiseCallback(
                x, y, 16, 3, seed=2, lr=0.01, log=lambda metrics, step: logged.append((step, metrics))
            )
        )
        return made[0]

    plain = fit_weights([])
    measured = fit_weights([with_noise])
    assert all(np.array_equal(a, b) for a, b in zip(plain, measured))
    assert [step for step, _ in logged] == [1, 2] == made[0].epochs
    assert [metrics for _, metrics in logged] == made[0].history
    assert set(made[0].history[0]) == {gradnoise.GRAD_NOISE_C, gradnoise.GRAD_NOISE_POWER, gradnoise.UPDATE_NOISE_POWER}
    assert made[0].mean()[gradnoise.GRAD_NOISE_C] == pytest.approx(
        (logged[0][1][gradnoise.GRAD_NOISE_C] + logged[1][1][gradnoise.GRAD_NOISE_C]) / 2
    )


def test_callback_with_k_zero_does_nothing():
    x, y = random_data(32, (6,), 3, seed=9)
    callback = gradnoise.GradNoiseCallback(x, y, 8, 0, seed=0, lr=0.1, log=lambda *a, **kw: pytest.fail("logged"))
    callback.set_model(dense_model())
    callback.on_epoch_end(0)
    assert callback.history == [] and callback.mean() == {}


def estimate_from_files(weights: str, data: str) -> dict:
    with np.load(data) as arrays:
        x, y = arrays["x"], arrays["y"]
    model = bn_model()
    model.load_weights(weights)
    return gradnoise.estimate(model, x, y, **CROSS_BACKEND)


@pytest.mark.e2e
@pytest.mark.parametrize("backend", ["torch", "jax"])  # jax: only where installed
def test_other_backends_give_the_same_estimate(tmp_path, backend):
    pytest.importorskip(backend)
    keras.utils.set_random_seed(0)
    x, y = random_data(64, (8, 8, 1), 4, seed=10)
    model = bn_model()
    model.save_weights(tmp_path / "model.weights.h5")
    np.savez(tmp_path / "data.npz", x=x, y=y)
    proc = subprocess.run(
        [sys.executable, __file__, str(tmp_path / "model.weights.h5"), str(tmp_path / "data.npz")],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "KERAS_BACKEND": backend, "TF_CPP_MIN_LOG_LEVEL": "2"},
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    theirs = json.loads(proc.stdout.strip().splitlines()[-1])
    ours = estimate_from_files(str(tmp_path / "model.weights.h5"), str(tmp_path / "data.npz"))
    assert set(theirs) == set(ours) == {gradnoise.GRAD_NOISE_C, gradnoise.GRAD_NOISE_POWER}
    assert theirs == pytest.approx(ours, rel=1e-3)


if __name__ == "__main__":
    print(json.dumps(estimate_from_files(*sys.argv[1:3])))
