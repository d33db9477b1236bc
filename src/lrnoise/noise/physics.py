"""Physical weight-noise models: one class per model, in the style of IBM aihwkit's `inference/noise`.

A model sees every targeted weight tensor flattened and concatenated (a `Layout`), computes its
per-tensor constants once (`prepare`) and then makes one noisy draw of the whole concatenation per
(level, seed) with a single `keras.random.normal` call (`sample`): a few device ops per draw whatever
the number of tensors. The level is the noise form factor eta (additive, multiplicative) or the time t
in seconds since programming (pcm). Pure keras / keras.ops: runs under any Keras backend.
"""

from __future__ import annotations

import math
from typing import ClassVar

import numpy as np

from lrnoise import paper
from lrnoise.errors import LrnoiseError


class _Keras:
    """keras, imported on first use: the models' names, defaults and checks (what a command validates before it
    runs, and NoiseConfig's defaults) load without TensorFlow; the first draw imports it."""

    def __getattr__(self, name: str):
        import keras as real

        globals()["keras"] = real  # from now on the module itself: no lookup through here in the draw loop
        return getattr(real, name)


keras = _Keras()


# ---------------------------------------------------------------- the flat view a noise model works on
class Layout:
    """Every targeted tensor flattened and concatenated: what a noise model sees (one random op per draw)."""

    def __init__(self, tensors: list):
        """`tensors`: backend tensors or numpy arrays of any shapes (float32). Kept as given: per-tensor
        statistics (e.g. the additive sigma_w) are taken on the originals, exactly as before."""
        if not tensors:
            raise LrnoiseError("a noise layout needs at least one weight tensor, got none")
        self.tensors = [keras.ops.convert_to_tensor(t, dtype="float32") for t in tensors]
        self.shapes = [tuple(int(d) for d in t.shape) for t in self.tensors]
        self.sizes = [int(np.prod(shape)) for shape in self.shapes]  # np.prod(()) = 1 for scalars
        if min(self.sizes) == 0:
            raise LrnoiseError(f"weight tensors must not be empty, got shapes {self.shapes}")
        self.num_segments = len(self.tensors)
        self.split_at = [int(i) for i in np.cumsum(self.sizes)[:-1]]
        # TensorFlow turns a Python shape into a tensor on every reshape (~110 us through keras.ops): splitting
        # a ResNet20 draw into its 59 tensors took 8 ms of a 43 ms draw. Made once, the shapes cost nothing per
        # draw; a reshape moves no value. JAX and torch take the Python shapes.
        self._split_shapes = (
            [keras.ops.convert_to_tensor(np.array(shape, dtype=np.int32)) for shape in self.shapes]
            if keras.backend.backend() == "tensorflow"
            else self.shapes
        )
        self.values = keras.ops.concatenate([keras.ops.reshape(t, [-1]) for t in self.tensors])  # (total,)
        self.segment_ids = keras.ops.convert_to_tensor(
            np.repeat(np.arange(self.num_segments, dtype=np.int32), self.sizes), dtype="int32"
        )  # (total,)
        self._counts = keras.ops.convert_to_tensor(np.array(self.sizes, dtype=np.float32))  # (num_segments,)

    def spread(self, per_tensor):
        """(num_segments,) -> (total,): each tensor's value repeated over its elements."""
        return keras.ops.take(per_tensor, self.segment_ids, axis=0)

    def reduce(self, x, how: str):
        """(total,) -> (num_segments,): the "max", "sum" or "mean" of x over each tensor's elements."""
        if how == "max":
            return keras.ops.segment_max(x, self.segment_ids, num_segments=self.num_segments)
        total = keras.ops.segment_sum(x, self.segment_ids, num_segments=self.num_segments)
        if how == "sum":
            return total
        if how == "mean":
            return total / keras.ops.cast(self._counts, total.dtype)
        raise LrnoiseError(f"unknown reduction {how!r}: choose one of max, sum, mean")

    def split(self, flat) -> list:
        """(total,) -> one tensor per input, in the original shapes."""
        parts = keras.ops.split(flat, self.split_at) if self.split_at else [flat]
        return [keras.ops.reshape(part, shape) for part, shape in zip(parts, self._split_shapes)]


# ---------------------------------------------------------------- the models
MAX_ETA = 1.0  # the largest eta: noise as large as the weights (the paper's largest is 0.4; 10 reads as a percent)


class NoiseModel:
    """A noise model: `prepare(layout)` once, then `sample(prepared, level, seed)` per draw."""

    name: ClassVar[str]
    level_name: ClassVar[str] = "eta"  # what a level is: "eta" (form factor) or "t" (seconds)
    level_unit: ClassVar[str] = ""
    default_levels: ClassVar[tuple] = paper.ETAS  # the paper's etas (1 % ... 40 %)
    zero_is_clean: ClassVar[bool] = True  # level 0 leaves the weights exactly clean (eta = 0; not t = 0 of pcm)
    default_targets: ClassVar[str] = "trainable"
    option_defaults: ClassVar[dict] = {}

    def __init__(self, **options):
        unknown = sorted(set(options) - set(self.option_defaults))
        if unknown:
            raise LrnoiseError(
                f"unknown option {unknown[0]!r} for noise {self.name}: allowed options: {_names(self.option_defaults)}"
            )
        self.options = {**self.option_defaults, **options}
        for key, value in self.options.items():
            self._check_option(key, value)

    def _check_option(self, key: str, value) -> None:
        """Raises LrnoiseError if `value` is not allowed for option `key` (override for models with options)."""

    def check_level(self, level: float) -> None:
        """Levels of eta: fractions of each tensor's sigma_w, finite, from 0 to MAX_ETA (0.1 = 10 %)."""
        if not _is_real(level) or not (math.isfinite(level) and 0 <= level <= MAX_ETA):
            raise LrnoiseError(
                f"noise {self.name}: level {self.level_name} must be a fraction from 0 to {MAX_ETA:g} (0.1 = 10 %), "
                f"got {level!r}"
            )

    def prepare(self, layout: Layout):
        """Constants computed once per model/injector (nothing by default)."""
        return Prepared(layout)

    def sample(self, prepared, level: float, seed: int):
        """One noisy draw of layout.values: (total,) tensor."""
        raise NotImplementedError

    def __repr__(self) -> str:
        shown = ", ".join(f"{k}={v!r}" for k, v in self.options.items())
        return f"{type(self).__name__}({shown})"


class Prepared:
    """What `prepare` returns: the layout plus named per-element constants."""

    def __init__(self, layout: Layout, **constants):
        self.layout = layout
        self.__dict__.update(constants)


class Additive(NoiseModel):
    """The paper's model (eq. 4-6): W_noisy = W + N(0, (eta * sigma_w)^2), sigma_w = std of the clean tensor W,
    drawn on the concatenation of all target tensors with one seed per draw."""

    name = "additive"

    def prepare(self, layout: Layout):
        sigma_w = keras.ops.stack([keras.ops.std(t) for t in layout.tensors])  # (num_segments,), eq. 6 per tensor
        return Prepared(layout, sigma_w=layout.spread(sigma_w))  # (total,)

    def sample(self, prepared, level: float, seed: int):
        w = prepared.layout.values
        return w + keras.random.normal(keras.ops.shape(w), seed=int(seed), dtype=w.dtype) * (level * prepared.sigma_w)


class Multiplicative(NoiseModel):
    """Device-to-device variation proportional to each weight: W_noisy = W * (1 + N(0, eta^2))."""

    name = "multiplicative"

    def sample(self, prepared, level: float, seed: int):
        w = prepared.layout.values
        return w * (1.0 + keras.random.normal(keras.ops.shape(w), seed=int(seed), dtype=w.dtype) * level)


# PCM constants (aihwkit PCMLikeNoiseModel defaults, fitted on ~1 million IBM PCM devices)
PROG_COEFF = (0.26348, 1.9650, -1.1731)  # sigma_p polynomial in g_T/g_max, uS at g_max = 25 uS
PROG_COEFF_G_MAX = 25.0  # uS, the g_max the polynomial was fitted at
T0 = 20.0  # s: first read after programming, the drift reference time
T_READ = 250e-9  # s: duration of one read (1/f noise integration window)
G_RELATIVE_FLOOR = 1e-7  # g_T/g_max floor inside the drift log
PCM_NORMALS = 6  # normals per weight: (programming, drift nu, read) x (g+, g-)


class PCM(NoiseModel):
    r"""Phase-change memory on a differential pair, after programming and drift to inference time t.

    Sources: Nandakumar et al., "Phase-change memory models for deep learning training and inference",
    ICECS 2019; Joshi et al., "Accurate deep neural network inference using computational phase-change
    memory", Nature Communications 11, 2473 (2020); IBM aihwkit `inference.noise.pcm.PCMLikeNoiseModel`.
    All conductances in uS, per weight tensor W (one segment of the layout):

    1. Mapping: s = g_max / max|W|; g+_T = clip(s W, 0, g_max), g-_T = clip(-s W, 0, g_max) (the idle device
       of each pair is programmed to 0 uS; both devices are noisy).
    2. Programming: g_p = max(0, g_T + sigma_p z),
       sigma_p = (c0 + c1 g_T/g_max + c2 (g_T/g_max)^2) (g_max / 25) prog_noise_scale,
       (c0, c1, c2) = (0.26348, 1.9650, -1.1731).
    3. Drift: g_d = g_p ((t + t0)/t0)^(-nu), t0 = 20 s, nu = |mu + sd z| drift_scale with g_r = max(g_T/g_max, 1e-7),
       mu = clip(-0.0155 ln g_r + 0.0244, 0.049, 0.1), sd = clip(-0.0125 ln g_r - 0.0059, 0.008, 0.045).
    4. Accumulated 1/f read noise: g_t = max(0, g_d + |g_d| sigma_r z),
       sigma_r = Q_s sqrt(ln((t + t0 + t_read)/(2 t_read))) read_noise_scale, t_read = 250 ns,
       Q_s = min(0.0088 / max((g_p/g_max)^0.65, 1e-3), 0.2).
    5. Weights: W_t = (g+_t - g-_t) / s; W_p = (g+_p - g-_p) / s.
    6. Global drift compensation (option): W_t * mean|W_p| / mean|W_t| per tensor (factor 1 if mean|W_t| = 0).

    z are independent standard normals (six per weight, one random op per draw). At t = 0 the drift factor
    is 1 but the read noise is already there. A tensor of zeros stays zero. As sigma_p scales with g_max and
    drift and read noise depend on g/g_max only, g_max sets the units: W_t does not depend on it.
    A real chip differs: per-column (not per-tensor) conductance scaling and compensation, DAC/ADC
    quantisation, IR drop, nonlinear peripherals, and iterative programming with verify are not modelled.
    """

    name = "pcm"
    level_name = "t"
    zero_is_clean = False  # at t = 0 the programming and read noise are already there
    level_unit = "s"
    default_levels = (1.0, 3600.0, 86400.0, 2592000.0, 31536000.0)  # 1 s, 1 h, 1 day, 30 days, 1 year
    default_targets = "kernels"
    option_defaults = {
        "g_max": 25.0,
        "drift_compensation": True,
        "prog_noise_scale": 1.0,
        "read_noise_scale": 1.0,
        "drift_scale": 1.0,
    }

    def _check_option(self, key: str, value) -> None:
        if key == "drift_compensation":
            if not isinstance(value, (bool, np.bool_)):
                raise LrnoiseError(f"noise pcm: drift_compensation must be true or false, got {value!r}")
        elif key == "g_max":
            if not (_is_real(value) and math.isfinite(value) and value > 0):
                raise LrnoiseError(f"noise pcm: g_max must be a finite number > 0 (uS), got {value!r}")
        elif not (_is_real(value) and math.isfinite(value) and value >= 0):
            raise LrnoiseError(f"noise pcm: {key} must be a finite number >= 0 (1 = as measured), got {value!r}")

    def check_level(self, level: float) -> None:
        """Levels of t: seconds since programming, finite and >= 0."""
        if not _is_real(level) or not (math.isfinite(level) and level >= 0):
            raise LrnoiseError(
                f"noise pcm: level t must be a finite number of seconds >= 0 (e.g. 3600 = 1 h), got {level!r}"
            )

    def prepare(self, layout: Layout):
        """Per-element constants of the clean weights: scale, target conductances, noise parameters."""
        g_max = float(self.options["g_max"])
        w = layout.values  # (total,)
        max_abs = layout.spread(layout.reduce(keras.ops.abs(w), "max"))  # (total,)
        inv_s = max_abs / g_max  # 1/s: 0 for an all-zero tensor, which then stays zero
        s = g_max / keras.ops.where(max_abs > 0, max_abs, 1.0)  # zero tensor: any finite s, g_T = 0
        g_target = keras.ops.clip(keras.ops.stack([s * w, -s * w]), 0.0, g_max)  # (2, total): g+ and g-
        mu, sd = drift_coefficient_stats(g_target, g_max)
        return Prepared(
            layout,
            inv_s=inv_s,
            g_target=g_target,
            sigma_prog=programming_sigma(g_target, g_max) * self.options["prog_noise_scale"],
            nu_mean=mu,
            nu_sd=sd,
        )

    def sample(self, prepared, level: float, seed: int):
        g_max, o = float(self.options["g_max"]), self.options
        z = keras.random.normal(
            (PCM_NORMALS, keras.ops.shape(prepared.g_target)[1]), seed=int(seed), dtype=prepared.g_target.dtype
        )  # (6, total): one random op per draw
        g_prog = keras.ops.maximum(prepared.g_target + prepared.sigma_prog * z[0:2], 0.0)  # (2, total)
        nu = keras.ops.abs(prepared.nu_mean + prepared.nu_sd * z[2:4]) * o["drift_scale"]
        g_drift = g_prog * keras.ops.exp(-nu * math.log((level + T0) / T0))
        sigma_read = read_noise_q(g_prog, g_max) * (read_noise_time_factor(level) * o["read_noise_scale"])
        g_final = keras.ops.maximum(g_drift + keras.ops.abs(g_drift) * sigma_read * z[4:6], 0.0)
        w_final = (g_final[0] - g_final[1]) * prepared.inv_s  # (total,)
        if not o["drift_compensation"]:
            return w_final
        w_prog = (g_prog[0] - g_prog[1]) * prepared.inv_s
        return w_final * prepared.layout.spread(compensation_factor(prepared.layout, w_prog, w_final))


def programming_sigma(g_target, g_max: float):
    """sigma_p (uS) of programming to g_target: (c0 + c1 x + c2 x^2) g_max/25, x = g_target/g_max."""
    x = g_target / g_max
    c0, c1, c2 = PROG_COEFF
    return (c0 + c1 * x + c2 * x * x) * (g_max / PROG_COEFF_G_MAX)


def drift_coefficient_stats(g_target, g_max: float):
    """Mean and sd of the drift exponent nu (before |.|) as functions of g_r = max(g_target/g_max, 1e-7)."""
    log_g = keras.ops.log(keras.ops.maximum(keras.ops.abs(g_target) / g_max, G_RELATIVE_FLOOR))
    return keras.ops.clip(-0.0155 * log_g + 0.0244, 0.049, 0.1), keras.ops.clip(-0.0125 * log_g - 0.0059, 0.008, 0.045)


def read_noise_q(g_prog, g_max: float):
    """Q_s = min(0.0088 / max((g_p/g_max)^0.65, 1e-3), 0.2): relative 1/f read noise per sqrt(log-time)."""
    return keras.ops.minimum(0.0088 / keras.ops.maximum(keras.ops.power(g_prog / g_max, 0.65), 1e-3), 0.2)


def read_noise_time_factor(t: float) -> float:
    """sqrt(ln((t + t0 + t_read) / (2 t_read))): 1/f noise accumulated from programming to t."""
    return math.sqrt(math.log((t + T0 + T_READ) / (2 * T_READ)))


def compensation_factor(layout: Layout, w_prog, w_final):
    """(num_segments,) mean|W_p| / mean|W_t| per tensor, 1 where mean|W_t| = 0 (nothing left to rescale)."""
    target = layout.reduce(keras.ops.abs(w_prog), "mean")
    actual = layout.reduce(keras.ops.abs(w_final), "mean")
    return keras.ops.where(actual > 0, target / keras.ops.where(actual > 0, actual, 1.0), 1.0)


NOISE_MODELS = {model.name: model for model in (Additive, Multiplicative, PCM)}  # by each class's own name


def make(name: str, **options) -> NoiseModel:
    """The noise model `name` with `options` (LrnoiseError for an unknown name or option)."""
    if name not in NOISE_MODELS:
        raise LrnoiseError(f"unknown noise {name!r}: choose one of {', '.join(NOISE_MODELS)}")
    return NOISE_MODELS[name](**options)


def perturb(weights: np.ndarray, noise: str, level: float, seed: int, **options) -> np.ndarray:
    """One noisy copy of ONE tensor, exactly as a draw of that configuration perturbs it (same shape and dtype)."""
    model = make(noise, **options)
    model.check_level(level)
    weights = np.asarray(weights)
    layout = Layout([weights.astype(np.float32)])
    flat = model.sample(model.prepare(layout), level, seed)
    return np.asarray(keras.ops.convert_to_numpy(layout.split(flat)[0])).astype(weights.dtype, copy=False)


def _is_real(value) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, (bool, np.bool_))


def _names(options: dict) -> str:
    return ", ".join(options) if options else "none"
