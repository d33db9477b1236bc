"""Gradient noise of SGD measured during training: the C of the paper's eq. 1-3, from K minibatch gradients.

Eq. 1-3: an SGD step is w <- w - alpha * g_B with g_B = (1/|B|) sum_{i in B} grad L_i, an unbiased estimate of
the full gradient g_D = grad L_D, so it deviates from the full-batch step by alpha * (g_B - g_D), whose power is
E||alpha (g_B - g_D)||^2 <= alpha^2 * C / |B| with the per-example gradient variance C = E_i ||grad L_i - g_D||^2
(equality for batches drawn with replacement). The paper uses this noise power to explain how the learning rate
(and batch size) shape the weights' tolerance to analog noise; this module measures C and alpha^2 C / |B|.

Estimator. Draw K minibatches B_1..B_K of size B (each without replacement, independently of each other),
take their gradients g_k (flattened over all trainable weights) and their mean g. Then

    C_hat = B * sum_k ||g_k - g||^2 / (K - 1)          grad_noise_power = lr^2 * C_hat / B

K - 1, not K: g is itself estimated from the same K draws, which removes one degree of freedom (Bessel), so
sum_k ||g_k - g||^2 / (K - 1) is unbiased for E||g_B - g_D||^2 = tr Cov(g_B) without knowing g_D.
Finite population: a batch drawn without replacement from N examples has E||g_B - g_D||^2 = C/B * (N-B)/(N-1),
so E[C_hat] = C * (N - B) / (N - 1) (0.9975 C for CIFAR's N = 50000, B = 128). We keep that factor on purpose:
grad_noise_power is exactly the power of the step noise SGD sees; divide C_hat by (N-B)/(N-1) for C itself.
The gradients are taken in training mode (batch norm normalises with the batch's own statistics, as in a real
step), so with batch norm g_B is not a mean of per-example gradients; the minibatch-level estimator above still
measures the step noise, which is what eq. 2 bounds. Data augmentation is not applied (raw training images);
regularisation losses are left out (they do not depend on the batch, so they carry no noise).

Update noise. For Adam, Nadam and Adamax the step is not lr * g_B but lr * u(g_B) with a preconditioned,
momentum-averaged direction u; eq. 2's bound on lr^2 * C / B then describes the raw gradient, not what moves the
weights. update_noise_power applies the optimizer's actual update rule, from its CURRENT moments and iteration,
to each minibatch gradient (e.g. Adam: m_k = b1 m + (1-b1) g_k, v_k = b2 v + (1-b2) g_k^2,
u_k = m_k sqrt(1 - b2^t) / (1 - b1^t) / (sqrt(v_k) + eps) at t = iteration + 1, i.e. Keras's
m_hat / (sqrt(v_hat) + eps / sqrt(1 - b2^t))) and reports the same estimator on the step:
lr^2 * sum_k ||u_k - u||^2 / (K - 1), i.e. the power of the noise in the next actual weight update (the C_hat
estimator on u, times lr^2 / B * B).
SGD, momentum and Nesterov get no such key: given the optimizer state, the only random part of their next step
is lr * g_B (plain SGD and Keras's momentum, whose velocity term is fixed) or (1 + momentum) * lr * g_B
(Nesterov), so their update noise is grad_noise_power itself (times (1 + momentum)^2 for Nesterov).

Nothing here writes a model or optimizer variable or draws from a global RNG (batches come from
numpy.random.default_rng((seed, epoch, tag))), so training with the callback is bit-identical to training without.
"""

from __future__ import annotations

import weakref

import keras
import numpy as np

from lrnoise.errors import LrnoiseError

BATCH_TAG = 0x67726164  # "grad": keeps these draws apart from any other stream seeded with (seed, epoch)
# the quantities an estimate holds (names.GRAD_NOISE_METRICS names them in MLflow)
GRAD_NOISE_C = "c"  # C_hat (eq. 3)
GRAD_NOISE_POWER = "power"  # lr^2 C_hat / B (eq. 2's bound)
UPDATE_NOISE_POWER = "update_power"  # lr^2 * the same estimator on an adaptive optimizer's step


def _mean_cross_entropy(y, probs):
    return keras.ops.mean(keras.losses.sparse_categorical_crossentropy(y, probs))


def gradient_function(model, loss_fn=None, compiled: bool = True):
    """(x, y) -> gradients of loss_fn(y, model(x)) w.r.t. model.trainable_variables, in training mode, no write.

    The forward pass is model.stateless_call(trainable, non_trainable, x, training=True): batch norm uses the
    batch's statistics and its moving-average updates are returned by the call and discarded. Each backend
    differentiates with its own autodiff; `compiled` traces it once (tf.function / jax.jit; torch stays eager),
    ~5x faster for a ResNet20 on CPU. The variables' current values are read at every call.
    loss_fn(y, probs) -> scalar; default: mean sparse categorical cross-entropy on the softmax outputs.
    The function returns one backend tensor per trainable variable (zeros where the loss does not depend on it).
    """
    loss_fn = loss_fn or _mean_cross_entropy
    variables = model.trainable_variables

    def loss(trainable, non_trainable, x, y):
        probs, _ = model.stateless_call(trainable, non_trainable, x, training=True)  # updates discarded
        return loss_fn(y, keras.ops.cast(probs, "float32"))  # float32 loss also under mixed precision

    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        def tf_grads(x, y):  # variables read inside the graph: no ~100 tensors passed in per call (2x faster)
            trainable = [tf.convert_to_tensor(v.value) for v in variables]
            non_trainable = [tf.convert_to_tensor(v.value) for v in model.non_trainable_variables]
            with tf.GradientTape() as tape:
                tape.watch(trainable)
                value = loss(trainable, non_trainable, x, y)
            return tape.gradient(value, trainable)

        grads_of = tf.function(tf_grads, reduce_retracing=True) if compiled else tf_grads
    elif backend == "torch":
        import torch

        def grads_of(x, y):
            # new leaves sharing the variables' storage: autograd reads them, nothing writes them
            trainable = [v.value.detach().requires_grad_(True) for v in variables]
            with torch.enable_grad():
                value = loss(trainable, [v.value for v in model.non_trainable_variables], x, y)
            return torch.autograd.grad(value, trainable, allow_unused=True)
    elif backend == "jax":
        import jax

        jax_grads = jax.jit(jax.grad(loss)) if compiled else jax.grad(loss)

        def grads_of(x, y):
            return jax_grads([v.value for v in variables], [v.value for v in model.non_trainable_variables], x, y)
    else:
        raise LrnoiseError(f"gradient noise needs the tensorflow, torch or jax backend, got {backend!r}")

    def gradients(x, y) -> list:
        grads = grads_of(keras.ops.convert_to_tensor(x), keras.ops.convert_to_tensor(y))
        return [keras.ops.zeros(v.shape, dtype=v.dtype) if g is None else g for g, v in zip(grads, variables)]

    return gradients


# Gradient passes run side by side in stacked_gradient_function: on 2 cores 2 were as fast as 8 (92-93 vs 88-101 ms
# for a digits ResNet20's K = 8; one at a time 137 ms, all measured in one process), and each pass in flight holds
# its activations (a CIFAR ResNet56 at batch 128: hundreds of MB), so not K.
PARALLEL_PASSES = 2


def stacked_gradient_function(model, loss_fn=None, compiled: bool = True):
    """(xs, ys) -> K x P float32 NumPy: row k is the flattened gradient of minibatch (xs[k], ys[k]) (K x B x ...
    and K x B), each as gradient_function computes it (training mode, nothing written).

    Under TensorFlow, `compiled` traces ONE function for all K minibatches: a tf.map_fn running PARALLEL_PASSES
    iterations side by side, its rows flattened in the graph. On a 2-core CPU a digits ResNet20's 8 gradients took
    68-93 ms instead of ~98-137 ms one call at a time; the rows are bit-identical (test_gradnoise).
    Other backends (and `compiled=False`) call gradient_function once per minibatch.
    """
    if compiled and keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        variables = model.trainable_variables
        loss_fn = loss_fn or _mean_cross_entropy

        def flat_gradient(batch):  # one minibatch -> its P gradient entries, in trainable-variable order
            x, y = batch
            trainable = [tf.convert_to_tensor(v.value) for v in variables]
            non_trainable = [tf.convert_to_tensor(v.value) for v in model.non_trainable_variables]
            with tf.GradientTape() as tape:
                tape.watch(trainable)
                probs, _ = model.stateless_call(trainable, non_trainable, x, training=True)  # updates discarded
                value = loss_fn(y, keras.ops.cast(probs, "float32"))
            grads = tape.gradient(value, trainable)
            return tf.concat(
                [
                    tf.reshape(tf.zeros_like(t) if g is None else tf.cast(g, "float32"), [-1])
                    for g, t in zip(grads, trainable)
                ],
                axis=0,
            )

        @tf.function(reduce_retracing=True)
        def stacked(xs, ys):
            return tf.map_fn(
                flat_gradient, (xs, ys), fn_output_signature=tf.float32, parallel_iterations=PARALLEL_PASSES
            )

        return lambda xs, ys: stacked(tf.convert_to_tensor(xs), tf.convert_to_tensor(ys)).numpy()

    gradients = gradient_function(model, loss_fn, compiled)
    return lambda xs, ys: np.stack([flatten(gradients(x, y), np.float32) for x, y in zip(xs, ys)])


_COMPILED = weakref.WeakKeyDictionary()  # model -> its traced stacked-gradient function (a sweep reuses one model)


def compiled_gradients(model):
    """stacked_gradient_function(model), traced once per model object and kept while the model lives."""
    if model not in _COMPILED:
        _COMPILED[model] = stacked_gradient_function(model)
    return _COMPILED[model]


def batch_gradients(model, x, y, loss_fn=None) -> list:
    """Gradients of the mean loss of the minibatch (x, y) w.r.t. model.trainable_variables, training mode, eager,
    no variable written: see gradient_function (use that, compiled, for repeated calls on one model)."""
    return gradient_function(model, loss_fn, compiled=False)(x, y)


def flatten(tensors, dtype=np.float64) -> np.ndarray:
    """Tensors (e.g. gradients) concatenated into one NumPy vector of P = number of weights. On a CPU NumPy's
    concatenation is ~20x faster than ~200 eager backend ops; on a GPU it is one copy of a few MB."""
    return np.concatenate([np.asarray(keras.ops.convert_to_numpy(t), dtype=dtype).ravel() for t in tensors])


def noise_batches(n: int, batch_size: int, k: int, seed: int, epoch: int) -> list[np.ndarray]:
    """K index arrays of batch_size distinct examples out of n: a pure function of (seed, epoch), no global RNG."""
    if not 1 <= batch_size <= n:
        raise LrnoiseError(f"gradient noise batch size must be between 1 and the {n} examples, got {batch_size}")
    if k < 1:
        raise LrnoiseError(f"number of gradient noise batches must be >= 1, got {k}")
    rng = np.random.default_rng([seed, epoch, BATCH_TAG])
    return [rng.choice(n, size=batch_size, replace=False) for _ in range(k)]


def spread(rows: np.ndarray) -> float:
    """sum_k ||r_k - mean(r)||^2 / (K - 1) for K x P rows: unbiased estimate of tr Cov(r) (Bessel's K - 1).
    Elementwise in the rows' precision, the sum accumulated in float64."""
    centred = rows - rows.mean(axis=0)
    centred *= centred  # in place: one K x P temporary
    return float(np.sum(centred, dtype=np.float64) / (len(rows) - 1))


def _unwrap(optimizer):
    """The optimizer whose rule updates the weights (a LossScaleOptimizer only rescales gradients)."""
    while isinstance(optimizer, keras.optimizers.LossScaleOptimizer):
        optimizer = optimizer.inner_optimizer
    return optimizer


def _flat_slots(optimizer, variables, slot: str):
    """The optimizer's per-variable slot list (e.g. "_momentums"), flattened in `variables` order (float32, P)."""
    if not optimizer.built:  # no step taken yet: every moment is still its zero initial value
        return np.zeros(sum(int(np.prod(v.shape)) for v in variables), np.float32)
    slots = getattr(optimizer, slot, None)
    if slots is None:
        raise LrnoiseError(
            f"{type(optimizer).__name__} has no {slot} (unknown Keras optimizer layout): "
            f"update noise supports Keras 3.15's Adam, Nadam and Adamax"
        )
    readers = _SLOT_READERS.setdefault(optimizer, {})
    key = (slot, tuple(id(v) for v in variables))
    if key not in readers:
        try:
            readers[key] = _slot_reader([slots[optimizer._get_variable_index(v)] for v in variables])
        except KeyError:
            raise LrnoiseError("the optimizer was built for other variables than the model's trainable ones") from None
    return readers[key]()


_SLOT_READERS = weakref.WeakKeyDictionary()  # optimizer -> {(slot, variables): its reader}: a sweep reuses one


def _slot_reader(slot_variables: list):
    """() -> the variables' current values flattened into one float32 NumPy vector. Under TensorFlow one traced
    call (0.8 ms against 7.3 ms for a ResNet20's ~60 variables read one by one on a 2-core x86-64 CPU with AVX2;
    the same values)."""
    if keras.backend.backend() != "tensorflow":
        return lambda: flatten([v.value for v in slot_variables], np.float32)
    import tensorflow as tf

    @tf.function
    def flat():
        return tf.concat([tf.reshape(tf.cast(v.value, tf.float32), [-1]) for v in slot_variables], axis=0)

    return lambda: flat().numpy()


# The rules below: K x P float32 gradients in, K x P directions out (elementwise, in float32 as Keras's own step).
def _adam(opt, variables, grads, t):
    # in place on K x P temporaries (two instead of eight: ~2x faster for a ResNet32), same float32 operations
    b1, b2, eps = opt.beta_1, opt.beta_2, opt.epsilon
    m = np.multiply(grads, np.float32(1 - b1))  # m = b1 m + (1 - b1) g, K x P
    m += np.float32(b1) * _flat_slots(opt, variables, "_momentums")
    v = np.square(grads)  # v = b2 v + (1 - b2) g^2
    v *= np.float32(1 - b2)
    v += np.float32(b2) * _flat_slots(opt, variables, "_velocities")
    if opt.amsgrad:
        np.maximum(_flat_slots(opt, variables, "_velocity_hats"), v, out=v)
    m *= np.float32(np.sqrt(1 - b2**t) / (1 - b1**t))
    np.sqrt(v, out=v)
    v += np.float32(eps)
    m /= v
    return m


def _nadam(opt, variables, grads, t):
    b1, b2, eps = opt.beta_1, opt.beta_2, opt.epsilon
    u_t = b1 * (1 - 0.5 * 0.96**t)  # Dozat's momentum schedule, as keras.optimizers.Nadam
    u_next = b1 * (1 - 0.5 * 0.96 ** (t + 1))
    product = float(opt._u_product.numpy()) * u_t if opt.built else u_t  # the step multiplies it in first
    m = b1 * _flat_slots(opt, variables, "_momentums") + (1 - b1) * grads
    v = b2 * _flat_slots(opt, variables, "_velocities") + (1 - b2) * np.square(grads)
    m_hat = u_next * m / (1 - product * u_next) + (1 - u_t) * grads / (1 - product)
    return m_hat / (np.sqrt(v / (1 - b2**t)) + eps)


def _adamax(opt, variables, grads, t):
    b1, b2, eps = opt.beta_1, opt.beta_2, opt.epsilon
    m = b1 * _flat_slots(opt, variables, "_m") + (1 - b1) * grads
    u = np.maximum(b2 * _flat_slots(opt, variables, "_u"), np.abs(grads))
    return m / ((1 - b1**t) * (u + eps))


def update_directions(optimizer, variables, grads):
    """Per-row step direction u(g_k) (the step is -lr * u) for K x P flat gradients, from the optimizer's current
    state, nothing written: K x P float32. None for SGD (with or without momentum): its step noise is the
    gradient noise."""
    optimizer = _unwrap(optimizer)
    if type(optimizer) is keras.optimizers.SGD:
        return None
    rules = ((keras.optimizers.Adam, _adam), (keras.optimizers.Nadam, _nadam), (keras.optimizers.Adamax, _adamax))
    rule = next((rule for cls, rule in rules if isinstance(optimizer, cls)), None)
    if rule is None:
        raise LrnoiseError(f"update noise is defined for SGD, Adam, Nadam and Adamax, got {type(optimizer).__name__}")
    if any(getattr(optimizer, a, None) for a in ("clipnorm", "clipvalue", "global_clipnorm")):
        raise LrnoiseError("update noise does not model gradient clipping: use an optimizer without clip* options")
    t = int(keras.ops.convert_to_numpy(optimizer.iterations)) + 1  # the step these gradients would take
    return rule(optimizer, variables, np.asarray(grads, dtype=np.float32), t)


def estimate(
    model, x, y, batch_size: int, k: int, seed: int, epoch: int, lr: float, optimizer=None, gradients=None
) -> dict:
    """{c: C_hat, power: lr^2 C_hat / B[, update_power]} from K minibatches of x, y.

    C_hat = B * sum_k ||g_k - g||^2 / (K - 1); update_noise_power = lr^2 * sum_k ||u_k - u||^2 / (K - 1) for an
    adaptive `optimizer` (see the module docstring). K forward + backward passes; the K x P gradients and the
    update rules in float32 NumPy, the sums accumulated in float64.
    `gradients`: a stacked_gradient_function(model) to reuse across calls (default: a fresh eager one).
    """
    if k < 2:
        raise LrnoiseError(f"gradient noise needs k >= 2 minibatches (a variance), got {k}")
    batches = np.stack(noise_batches(len(x), batch_size, k, seed, epoch))  # K x B indices
    gradients = gradients or stacked_gradient_function(model, compiled=False)
    grads = gradients(np.asarray(x[batches], dtype=np.float32), np.asarray(y[batches]))  # K x P float32
    step_noise = spread(grads)  # estimates E||g_B - g_D||^2 = C/B (N-B)/(N-1)
    metrics = {GRAD_NOISE_C: batch_size * step_noise, GRAD_NOISE_POWER: lr**2 * step_noise}
    if optimizer is not None:
        directions = update_directions(optimizer, model.trainable_variables, grads)
        if directions is not None:
            metrics[UPDATE_NOISE_POWER] = lr**2 * spread(directions)
    return metrics


class GradNoiseCallback(keras.callbacks.Callback):
    """Logs estimate(...) after every epoch via log(metrics, step=epoch + 1); k == 0 makes it a no-op.

    Batches depend on (seed, epoch + 1) only, so a resumed run measures the same batches. Epochs before
    start_epoch (0-based) are skipped. `history` holds each logged dict, `epochs` the matching epoch numbers.
    """

    def __init__(self, x, y, batch_size: int, k: int, seed: int, lr: float, log, start_epoch: int = 0):
        super().__init__()
        if k == 1 or k < 0:
            raise LrnoiseError(f"gradient noise batches k must be 0 (off) or >= 2, got {k}")
        noise_batches(len(x), batch_size, 1, seed, 0)  # fail now, not after the first epoch, on a bad batch size
        self.x, self.y, self.batch_size, self.k, self.seed, self.lr = x, y, batch_size, k, seed, lr
        self.log, self.start_epoch = log, start_epoch
        self.history: list[dict] = []
        self.epochs: list[int] = []
        self.gradients = None  # gradient_function(self.model), compiled on first use

    def set_model(self, model):
        super().set_model(model)
        self.gradients = None  # traced for the previous model

    def on_epoch_end(self, epoch, logs=None):
        if not self.k or epoch < self.start_epoch:
            return
        self.gradients = self.gradients or compiled_gradients(self.model)
        metrics = estimate(
            self.model,
            self.x,
            self.y,
            self.batch_size,
            self.k,
            self.seed,
            epoch + 1,
            self.lr,
            optimizer=self.model.optimizer,
            gradients=self.gradients,
        )
        self.log(metrics, step=epoch + 1)
        self.history.append(metrics)
        self.epochs.append(epoch + 1)

    def mean(self) -> dict:
        """{metric: mean over the measured epochs} ({} before any)."""
        keys = self.history[0] if self.history else {}
        return {key: float(np.mean([h[key] for h in self.history])) for key in keys}
