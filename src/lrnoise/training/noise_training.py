"""Noise-injection training (hardware-aware training): every training step sees the paper's weight noise, the
optimizer updates the clean weights.

For each training step t and each targeted tensor W (the paper's targets, noise_config.TARGETS["trainable"]: conv
and dense kernels and biases, BN gamma and beta):

    W_noisy = W + n,   n ~ N(0, (eta * sigma_w)^2),   sigma_w = std of the clean W   (eq. 4-6, per tensor)

a fresh draw in every step. The forward pass, the loss and its gradient g = dL/dW are taken at W_noisy, and
the optimizer's update is applied to the clean W: W <- W - step(g). This is the noise-injection training of
Joshi et al., "Accurate deep neural network inference using computational phase-change memory", Nature
Communications 11, 2473 (2020) (additive Gaussian weight noise in the forward pass, scaled to each layer's
weights, updates on the noise-free weights), which IBM aihwkit runs as hardware-aware training.

How: the draw is added to the variables before the model's own train_step and the same draw is taken away
after it. lrnoise's optimizers add their update to the variable (no decoupled weight decay), so the clean
weights move by exactly the step computed at the noisy ones (up to float rounding of the add and subtract).
The draw of step t depends only on (seed, t), t = optimizer.iterations, which a checkpoint restores: a resumed
training draws the same noise. Pure keras.ops / keras.random: TensorFlow and torch wrap the model's
train_step(data); JAX's train_step(state, data) is stateless, so there the noise is added to the state.
"""

from __future__ import annotations

import keras
import numpy as np

from lrnoise.noise import noise_config

ops = keras.ops

SEED_SALT = 0x7A1  # keeps training draws apart from the noise evaluation's draws of the same seed
_MARK = "_lrnoise_train_noise"  # on a model: the (eta, seed) its train_step injects, or None


class WeightNoise:
    """One model's per-step draw: the additive noise of every targeted tensor, from (seed, step) alone."""

    def __init__(self, model: keras.Model, eta: float, seed: int):
        self.eta, self.seed = float(eta), int(seed)
        self.variables = noise_config.TARGETS["trainable"](model)
        positions = {id(v): i for i, v in enumerate(model.trainable_variables)}
        self.positions = [positions[id(v)] for v in self.variables]  # where each sits in JAX's trainable state
        sizes = [int(np.prod(v.shape)) for v in self.variables]
        self.total, self.split_at = sum(sizes), [int(i) for i in np.cumsum(sizes)[:-1]]
        self.generator = keras.random.SeedGenerator(self.seed)  # its state is given per step, never stored

    def draw(self, clean: list, step) -> list:
        """The noise n of each tensor in `clean` (the targeted tensors' clean values) at training step `step`:
        one normal draw of all of them at once, split, scaled by eta * sigma_w per tensor."""
        dtype = self.generator.state.dtype
        state = ops.convert_to_tensor(np.array([self.seed * 1000003 + SEED_SALT, 0]), dtype=dtype) + ops.cast(
            step, dtype
        ) * ops.convert_to_tensor(np.array([0, 1]), dtype=dtype)
        with keras.StatelessScope(state_mapping=[(self.generator.state, state)]):
            z = keras.random.normal((self.total,), seed=self.generator)  # (total,)
        parts = ops.split(z, self.split_at) if self.split_at else [z]
        return [ops.reshape(part, w.shape) * (self.eta * ops.std(w)) for part, w in zip(parts, clean)]


def _stateful_step(model: keras.Model, weight_noise: WeightNoise):
    """TensorFlow / torch: train_step(data) of the model's class, run at the noisy weights."""
    plain = type(model).train_step

    def train_step(data):
        added = weight_noise.draw([v.value for v in weight_noise.variables], model.optimizer.iterations)
        for variable, n in zip(weight_noise.variables, added):
            variable.assign_add(n)
        logs = plain(model, data)  # forward, gradient and update at W + n
        for variable, n in zip(weight_noise.variables, added):
            variable.assign_sub(n)
        return logs

    return train_step


def _stateless_step(model: keras.Model, weight_noise: WeightNoise):
    """JAX: train_step(state, data) of the model's class, its trainable state moved to the noisy weights."""
    plain = type(model).train_step

    def train_step(state, data):
        trainable, non_trainable, optimizer_state, metrics_state = state
        optimizer = model.optimizer  # read when traced: the optimizer the step is traced for
        step = optimizer_state[[i for i, v in enumerate(optimizer.variables) if v is optimizer.iterations][0]]
        added = weight_noise.draw([trainable[i] for i in weight_noise.positions], step)
        noisy = list(trainable)
        for i, n in zip(weight_noise.positions, added):
            noisy[i] = noisy[i] + n
        logs, (trainable, non_trainable, optimizer_state, metrics_state) = plain(
            model, (noisy, non_trainable, optimizer_state, metrics_state), data
        )
        trainable = list(trainable)
        for i, n in zip(weight_noise.positions, added):
            trainable[i] = trainable[i] - n
        return logs, (trainable, non_trainable, optimizer_state, metrics_state)

    return train_step


def configure(model: keras.Model, eta: float, seed: int) -> None:
    """Makes model.fit train `model` with noise injection at `eta` (a fraction of sigma_w; 0: the model's own
    clean step). Its traced training step is dropped only when (eta, seed) changes."""
    wanted = (float(eta), int(seed)) if eta else None
    if getattr(model, _MARK, None) == wanted:
        return
    if wanted is None:
        del model.train_step  # the instance's step: the class's own is seen again
    else:
        weight_noise = WeightNoise(model, eta, seed)
        stateless = keras.backend.backend() == "jax"
        model.train_step = (_stateless_step if stateless else _stateful_step)(model, weight_noise)
    setattr(model, _MARK, wanted)
    model.train_function = None  # traced again with the step it now has


def recompute_batch_norm(model: keras.Model, x: np.ndarray, batch_size: int = 256) -> int:
    """Re-estimates every BatchNormalization layer's moving mean and variance on the model's clean weights: one
    pass over `x` (raw training images, no augmentation) in training mode, each layer's moving statistics the
    plain average of its per-batch statistics (momentum k / (k + 1) at batch k, so batch 0 replaces what was
    there). After noise-injection training the moving statistics were accumulated at noisy weights; a_0 and the
    noise evaluation use these instead. The trainable weights are untouched. Returns the number of layers."""
    layers = [
        layer for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization)
    ]  # models.resnet is flat
    saved = [layer.momentum for layer in layers]
    try:
        for k, start in enumerate(range(0, len(x), batch_size)):
            for layer in layers:
                layer.momentum = k / (k + 1)
            model(x[start : start + batch_size].astype(np.float32), training=True)
    finally:
        for layer, momentum in zip(layers, saved):
            layer.momentum = momentum
    return len(layers)
