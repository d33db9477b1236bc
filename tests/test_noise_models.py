"""Noise models: the old additive/multiplicative numbers, the Layout, PCM statistics against an independent
NumPy sampler of the same formulas, drift compensation, bad input, and another Keras backend."""

import os
import subprocess
import sys

import keras
import numpy as np
import pytest

from lrnoise.errors import LrnoiseError
from lrnoise.noise import physics as nm

SHAPES = [(3, 3, 4, 8), (8,), (20, 10), (), (1, 1, 2, 3)]  # conv kernel, bias, dense kernel, scalar, odd
DAY, YEAR = 86400.0, 31536000.0
Z_LIMIT = 5.0  # |z| allowed per compared statistic (120 comparisons per distribution: max |z| ~ 3.5 by chance)


def tensors(shapes=SHAPES, seed=0):
    rng = np.random.default_rng(seed)
    return [(rng.normal(size=shape) * (i + 1) * 0.1).astype(np.float32) for i, shape in enumerate(shapes)]


def weights(dist: str, n: int = 300_000, seed: int = 1) -> np.ndarray:
    rng = np.random.default_rng(seed)
    w = rng.uniform(-1, 1, n) if dist == "uniform" else rng.normal(0, 0.05, n)
    return w.astype(np.float32)


# ---------------------------------------------------------------- Layout
def test_layout_round_trip_and_segments():
    parts = tensors()
    layout = nm.Layout(parts)
    sizes = [int(np.prod(s)) for s in SHAPES]
    assert layout.num_segments == len(SHAPES) and layout.shapes == SHAPES
    assert tuple(layout.values.shape) == (sum(sizes),)
    ids = keras.ops.convert_to_numpy(layout.segment_ids)
    assert ids.dtype == np.int32 and list(np.bincount(ids)) == sizes
    back = layout.split(layout.values)
    assert [tuple(b.shape) for b in back] == SHAPES
    for clean, got in zip(parts, back):
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(got), clean)


@pytest.mark.parametrize("how, reference", [("max", np.max), ("sum", np.sum), ("mean", np.mean)])
def test_layout_reduce_and_spread(how, reference):
    parts = tensors()
    layout = nm.Layout(parts)
    reduced = keras.ops.convert_to_numpy(layout.reduce(layout.values, how))
    np.testing.assert_allclose(reduced, [reference(p) for p in parts], rtol=1e-5, atol=1e-6)
    spread = keras.ops.convert_to_numpy(layout.spread(layout.reduce(layout.values, how)))
    np.testing.assert_array_equal(spread, np.repeat(reduced, [p.size for p in parts]))


def test_layout_needs_tensors():
    with pytest.raises(LrnoiseError, match="at least one"):
        nm.Layout([])


# ---------------------------------------------------------------- additive / multiplicative: the old formulas
def old_draw(noise: str, parts: list, eta: float, seed: int) -> np.ndarray:
    """The former noise.Injector: one draw over the concatenation, sigma_w = keras.ops.std per tensor."""
    ops = keras.ops
    w = ops.concatenate([ops.reshape(ops.convert_to_tensor(p), [-1]) for p in parts])
    sigma = ops.concatenate([ops.full([p.size], ops.std(ops.convert_to_tensor(p)), dtype=w.dtype) for p in parts])
    z = keras.random.normal(ops.shape(w), seed=seed, dtype=w.dtype)
    return ops.convert_to_numpy(w + z * (eta * sigma) if noise == "additive" else w * (1.0 + z * eta))


@pytest.mark.parametrize("noise", ["additive", "multiplicative"])
@pytest.mark.parametrize("eta, seed", [(0.1, 0), (0.4, 123456)])
def test_same_numbers_as_the_old_formulas(noise, eta, seed):
    parts = tensors()
    model = nm.make(noise)
    layout = nm.Layout(parts)
    new = keras.ops.convert_to_numpy(model.sample(model.prepare(layout), eta, seed))
    np.testing.assert_array_equal(new, old_draw(noise, parts, eta, seed))
    single = nm.perturb(parts[0], noise, eta, seed)
    np.testing.assert_array_equal(single.ravel(), old_draw(noise, parts[:1], eta, seed))


@pytest.mark.parametrize("eta", [0.05, 0.3])
def test_additive_noise_has_mean_zero_and_std_eta_sigma_w(eta):
    w = weights("normal", 200_000)
    delta = (nm.perturb(w, "additive", eta, 7) - w).astype(np.float64)
    sigma = eta * w.astype(np.float64).std()
    assert abs(delta.mean()) < 5 * sigma / np.sqrt(w.size)
    assert abs(delta.std() - sigma) < 5 * sigma / np.sqrt(2 * w.size)


def test_multiplicative_noise_is_relative_with_std_eta():
    w = np.where(weights("uniform", 200_000) > 0, 1.0, -1.0).astype(np.float32) * 0.7
    relative = (nm.perturb(w, "multiplicative", 0.2, 7) / w - 1).astype(np.float64)
    assert abs(relative.mean()) < 5 * 0.2 / np.sqrt(w.size)
    assert abs(relative.std() - 0.2) < 5 * 0.2 / np.sqrt(2 * w.size)


@pytest.mark.parametrize("noise, level", [("additive", 0.1), ("multiplicative", 0.1), ("pcm", DAY)])
def test_seeds_reproduce_and_differ(noise, level):
    w = tensors([(4, 4, 3, 8)])[0]
    first = nm.perturb(w, noise, level, 11)
    assert first.shape == w.shape and first.dtype == w.dtype and np.isfinite(first).all()
    np.testing.assert_array_equal(first, nm.perturb(w, noise, level, 11))
    assert not np.allclose(first, nm.perturb(w, noise, level, 12))
    assert not np.allclose(first, w)


def test_perturb_keeps_the_dtype():
    w = tensors([(5, 6)])[0].astype(np.float64)
    out = nm.perturb(w, "pcm", 1.0, 0)
    assert out.dtype == np.float64 and out.shape == (5, 6)


# ---------------------------------------------------------------- PCM against an independent NumPy sampler
def numpy_pcm(
    w: np.ndarray,
    t: float,
    seed: int,
    drift_compensation: bool,
    prog_noise_scale=1.0,
    read_noise_scale=1.0,
    drift_scale=1.0,
    g_max=25.0,
) -> np.ndarray:
    """Nandakumar et al. 2019 / aihwkit PCMLikeNoiseModel written out plainly in float64 NumPy."""
    rng = np.random.default_rng(seed)
    w = w.astype(np.float64)
    s = g_max / np.abs(w).max()
    g_target = np.stack([np.clip(s * w, 0, g_max), np.clip(-s * w, 0, g_max)])  # g+ and g-
    x = g_target / g_max
    sigma_prog = (0.26348 + 1.9650 * x - 1.1731 * x**2) * (g_max / 25.0) * prog_noise_scale
    g_prog = np.maximum(g_target + rng.normal(0.0, sigma_prog), 0.0)
    log_g = np.log(np.maximum(x, 1e-7))
    mu = np.clip(-0.0155 * log_g + 0.0244, 0.049, 0.1)
    sd = np.clip(-0.0125 * log_g - 0.0059, 0.008, 0.045)
    nu = np.abs(rng.normal(mu, sd)) * drift_scale
    g_drift = g_prog * ((t + 20.0) / 20.0) ** (-nu)
    q_s = np.minimum(0.0088 / np.maximum((g_prog / g_max) ** 0.65, 1e-3), 0.2)
    sigma_read = q_s * np.sqrt(np.log((t + 20.0 + 250e-9) / (2 * 250e-9))) * read_noise_scale
    g_final = np.maximum(g_drift + np.abs(g_drift) * rng.normal(0.0, sigma_read), 0.0)
    w_final = (g_final[0] - g_final[1]) / s
    if drift_compensation:
        w_final *= np.abs((g_prog[0] - g_prog[1]) / s).mean() / np.abs(w_final).mean()
    return w_final


def decile_z(w: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """z of the difference in mean and in sd between samples a and b, per |w| decile: (10, 2).

    Compared per weight: sign(w) * (perturbed - w), i.e. the perturbed weight with its clean value taken
    off and mirrored (same sd as the perturbed weights; signed weights of a decile would mix +-|w|). SE of a
    mean = sd/sqrt(n); SE of a sd = sqrt(m4 - sd^4) / (2 sd sqrt(n)) (= sd/sqrt(2n) for a normal; these
    distributions are skewed, so the 4th central moment m4 is measured).
    """
    edges = np.quantile(np.abs(w), np.linspace(0, 1, 11))
    decile = np.clip(np.searchsorted(edges, np.abs(w), side="right") - 1, 0, 9)
    sign = np.where(w >= 0, 1.0, -1.0)
    z = np.zeros((10, 2))
    for d in range(10):
        pick = decile == d
        stats = [_mean_sd_se(sign[pick] * (x[pick].astype(np.float64) - w[pick])) for x in (a, b)]
        (ma, sa, se_ma, se_sa), (mb, sb, se_mb, se_sb) = stats
        z[d] = [(ma - mb) / np.hypot(se_ma, se_mb), (sa - sb) / np.hypot(se_sa, se_sb)]
    return z


def _mean_sd_se(x: np.ndarray):
    n, mean, sd = len(x), x.mean(), x.std()
    m4 = np.mean((x - mean) ** 4)
    return mean, sd, sd / np.sqrt(n), np.sqrt(max(m4 - sd**4, 0.0)) / (2 * sd * np.sqrt(n))


@pytest.mark.parametrize("dist", ["uniform", "normal"])
@pytest.mark.parametrize("t", [1.0, DAY, YEAR])
@pytest.mark.parametrize("compensation", [False, True])
def test_pcm_matches_the_numpy_sampler_per_decile(dist, t, compensation):
    w = weights(dist)
    ours = nm.perturb(w, "pcm", t, 5, drift_compensation=compensation)
    reference = numpy_pcm(w, t, 6, compensation)
    z = decile_z(w, ours, reference)
    assert np.abs(z).max() < Z_LIMIT, z


@pytest.mark.parametrize(
    "t, changed",
    [
        (1.0, {"prog_noise_scale": 1.1}),  # 10 % more programming noise
        (YEAR, {"drift_scale": 1.2}),  # 20 % faster drift
        (YEAR, {"read_noise_scale": 1.25}),  # 25 % more read noise
    ],
)
def test_the_decile_comparison_sees_a_wrong_model(t, changed):
    """Negative control: the same comparison against a sampler with one constant changed must fail."""
    w = weights("uniform")
    z = decile_z(w, nm.perturb(w, "pcm", t, 5, drift_compensation=False), numpy_pcm(w, t, 6, False, **changed))
    assert np.abs(z).max() > Z_LIMIT  # measured: 11.7, 113, 11.6


def pcm_draw(parts: list, t: float, seed: int, **options) -> list:
    model = nm.make("pcm", **options)
    layout = nm.Layout(parts)
    return [keras.ops.convert_to_numpy(p) for p in layout.split(model.sample(model.prepare(layout), t, seed))]


def test_drift_compensation_restores_the_programmed_mean_abs_per_tensor():
    """Same seed, same normals: drift_scale = read_noise_scale = 0 gives W_p (programming noise only)."""
    rng = np.random.default_rng(3)
    parts = [
        (rng.normal(size=(3, 3, 16, 32)) * 0.05).astype(np.float32),
        rng.uniform(-2, 2, (64, 10)).astype(np.float32),
        (rng.normal(size=(300,)) * 0.5).astype(np.float32),
    ]
    programmed = pcm_draw(parts, YEAR, 9, drift_scale=0.0, read_noise_scale=0.0, drift_compensation=False)
    compensated = pcm_draw(parts, YEAR, 9)
    drifted = pcm_draw(parts, YEAR, 9, drift_compensation=False)
    for w_p, w_c, w_t in zip(programmed, compensated, drifted):
        assert np.abs(w_c).mean() == pytest.approx(np.abs(w_p).mean(), rel=1e-5)
        assert np.abs(w_t).mean() < 0.7 * np.abs(w_p).mean()  # a year of drift without compensation
        np.testing.assert_allclose(w_c, w_t * (np.abs(w_p).mean() / np.abs(w_t).mean()), rtol=1e-4, atol=1e-7)


def test_mean_abs_weight_shrinks_with_time_without_compensation():
    w = weights("uniform", 100_000)
    times = [0.0, 1.0, 3600.0, DAY, 2592000.0, YEAR]
    mean_abs = [np.abs(nm.perturb(w, "pcm", t, 4, drift_compensation=False)).mean() for t in times]
    assert all(later < earlier for earlier, later in zip(mean_abs, mean_abs[1:])), mean_abs
    assert mean_abs[-1] < 0.6 * np.abs(w).mean()


def test_pcm_keeps_a_zero_tensor_zero_and_g_max_is_a_unit():
    parts = [np.zeros((4, 5), np.float32), tensors([(6, 7)])[0]]
    draw = pcm_draw(parts, DAY, 2)
    np.testing.assert_array_equal(draw[0], 0.0)
    assert np.isfinite(draw[1]).all() and not np.allclose(draw[1], parts[1])
    # sigma_p is referenced to 25 uS and drift/read noise depend on g/g_max: W_t does not depend on g_max
    np.testing.assert_allclose(pcm_draw(parts, DAY, 2, g_max=5.0)[1], draw[1], rtol=1e-4, atol=1e-6)


# ---------------------------------------------------------------- the model table and bad input
def test_model_table_and_defaults():
    assert set(nm.NOISE_MODELS) == {"additive", "multiplicative", "pcm"}
    for name in ("additive", "multiplicative"):
        model = nm.make(name)
        assert (model.level_name, model.level_unit, model.default_targets) == ("eta", "", "trainable")
        assert model.default_levels == (0.01, 0.05, 0.1, 0.2, 0.3, 0.4) and model.options == {}
    pcm = nm.make("pcm", drift_scale=2.0)
    assert (pcm.name, pcm.level_name, pcm.level_unit, pcm.default_targets) == ("pcm", "t", "s", "kernels")
    assert pcm.default_levels == (1.0, 3600.0, 86400.0, 2592000.0, 31536000.0)
    assert pcm.options == {
        "g_max": 25.0,
        "drift_compensation": True,
        "prog_noise_scale": 1.0,
        "read_noise_scale": 1.0,
        "drift_scale": 2.0,
    }


W_SMALL = np.ones((3, 4), np.float32)


@pytest.mark.parametrize(
    "call, words",
    [
        (lambda: nm.make("gaussian"), ["'gaussian'", "additive, multiplicative, pcm"]),
        (lambda: nm.make("additive", g_max=25.0), ["'g_max'", "additive", "allowed options: none"]),
        (lambda: nm.make("pcm", gmax=25.0), ["'gmax'", "g_max, drift_compensation, prog_noise_scale"]),
        (lambda: nm.make("pcm", drift_scale=-1.0), ["drift_scale", ">= 0", "-1.0"]),
        (lambda: nm.make("pcm", read_noise_scale=float("nan")), ["read_noise_scale", "finite"]),
        (lambda: nm.make("pcm", g_max=0.0), ["g_max", "> 0"]),
        (lambda: nm.make("pcm", drift_compensation="yes"), ["drift_compensation", "true or false"]),
        (lambda: nm.perturb(W_SMALL, "additive", -0.1, 0), ["eta", "from 0 to 1", "-0.1"]),
        (lambda: nm.perturb(W_SMALL, "multiplicative", float("inf"), 0), ["eta", "fraction", "inf"]),
        (lambda: nm.perturb(W_SMALL, "pcm", -1.0, 0), ["t", "seconds >= 0"]),
        (lambda: nm.perturb(W_SMALL, "pcm", float("nan"), 0), ["t", "finite"]),
    ],
)
def test_bad_input_is_one_line_naming_what_is_allowed(call, words):
    with pytest.raises(LrnoiseError) as raised:
        call()
    message = str(raised.value)
    assert "\n" not in message
    for word in words:
        assert word in message


# ---------------------------------------------------------------- another backend
TORCH_SCRIPT = """
import keras, numpy as np
from lrnoise.noise import physics as nm
w = np.random.default_rng(0).normal(size=(3, 3, 4, 5)).astype("float32")
out = nm.perturb(w, "pcm", 3600.0, 1)
model = nm.make("pcm")
layout = nm.Layout([w, w[0, 0] * 3.0])
parts = layout.split(model.sample(model.prepare(layout), 3600.0, 1))
print(keras.backend.backend(), out.shape, out.dtype, bool(np.isfinite(out).all()), bool((out != w).any()),
      [tuple(p.shape) for p in parts], bool(all(np.isfinite(keras.ops.convert_to_numpy(p)).all() for p in parts)))
"""


@pytest.mark.e2e
def test_pcm_runs_under_torch():
    pytest.importorskip("torch")
    env = {**os.environ, "KERAS_BACKEND": "torch"}
    proc = subprocess.run([sys.executable, "-c", TORCH_SCRIPT], capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.split() == [
        "torch",
        "(3,",
        "3,",
        "4,",
        "5)",
        "float32",
        "True",
        "True",
        "[(3,",
        "3,",
        "4,",
        "5),",
        "(4,",
        "5)]",
        "True",
    ]
