"""Analog weight noise: noise models, injection into a trained model, and the statistics of eq. 7-9.

For each eta and draw, every targeted weight tensor W becomes W + N(0, (eta * sigma_w)^2) with sigma_w the
standard deviation of that tensor's clean values (eq. 4-6); the test accuracy is measured and the clean
values are put back. a^eta = mean accuracy over draws (eq. 7), A^eta = a^eta / a_0 (eq. 8), and
A_avr = mean of A^eta over the etas (eq. 9). Pure Keras (keras.ops / keras.random): any backend.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import keras
import numpy as np
import pandas as pd

from lrnoise import models
from lrnoise.errors import LrnoiseError

PAPER_ETAS = (0.01, 0.05, 0.1, 0.2, 0.3, 0.4)  # the paper's noise form factors (1 % ... 40 %)
DEFAULT_TRIALS = 10  # draws per eta (the paper repeats but does not say how often)
DEFAULT_CI_TARGET = 0.005  # --trials auto: stop when the 95 % CI half-width of a^eta is below this (0.5 pp)
DEFAULT_MAX_TRIALS = 100  # --trials auto: never more draws than this per eta
MIN_AUTO_TRIALS = 3  # --trials auto: draws before the CI is trusted


# ---------------------------------------------------------------- noise models: (clean W, sigma_w, eta, seed) -> noisy W
# W and sigma_w have the same shape (sigma_w repeats each tensor's std over its elements).
def additive(w, sigma_w, eta, seed):
    """The paper's model: W + N(0, (eta * sigma_w)^2)."""
    return w + keras.random.normal(keras.ops.shape(w), seed=seed, dtype=w.dtype) * (eta * sigma_w)


def multiplicative(w, sigma_w, eta, seed):
    """Device-to-device variation proportional to each weight: W * (1 + N(0, eta^2))."""
    return w * (1.0 + keras.random.normal(keras.ops.shape(w), seed=seed, dtype=w.dtype) * eta)


NOISE_MODELS = {"additive": additive, "multiplicative": multiplicative}


# ---------------------------------------------------------------- which weights get noise
def _is_input_normalization(variable) -> bool:
    return variable.path.startswith(models.NORMALIZATION_LAYER + "/")


TARGETS = {
    # Default: every trainable tensor (conv/dense kernels and biases, BN gamma and beta): the values an
    # analog array would store. BN moving statistics and the input normalisation stay clean.
    "trainable": lambda model: [v for v in model.trainable_weights if not _is_input_normalization(v)],
    "kernels": lambda model: [v for v in model.trainable_weights if v.path.endswith("kernel")],
    # Every weight of the network, BN moving mean/variance included (input normalisation still excluded).
    "all": lambda model: [v for v in model.weights if not _is_input_normalization(v)],
}


def check_options(etas, trials, targets: str, noise: str, ci_target: float = DEFAULT_CI_TARGET,
                  max_trials: int = DEFAULT_MAX_TRIALS) -> None:
    if not etas:
        raise LrnoiseError("etas is empty: give at least one noise form factor, e.g. 0.01,0.1")
    bad = [e for e in etas if not (np.isfinite(e) and e >= 0)]
    if bad:
        raise LrnoiseError(f"etas must be finite and >= 0 (0.1 = 10 %), got {bad[0]}")
    if trials != "auto" and (not isinstance(trials, int) or trials < 1):
        raise LrnoiseError(f"trials must be an integer >= 1 or 'auto', got {trials!r}")
    if targets not in TARGETS:
        raise LrnoiseError(f"unknown targets {targets!r}: choose one of {', '.join(TARGETS)}")
    if noise not in NOISE_MODELS:
        raise LrnoiseError(f"unknown noise {noise!r}: choose one of {', '.join(NOISE_MODELS)}")
    if trials == "auto" and not (ci_target > 0 and max_trials >= MIN_AUTO_TRIALS):
        raise LrnoiseError(f"trials auto needs ci_target > 0 and max_trials >= {MIN_AUTO_TRIALS}")


class Injector:
    """Noisy versions of a model's weights. The clean values are held once; a draw returns
    {variable path: tensor} with noise on the targeted tensors and the clean value elsewhere.

    All targeted tensors are drawn in one random op over their concatenation (sigma_w repeated per
    element), then split back: a few device ops per draw instead of several per tensor. Nothing is
    rebuilt or reloaded, and the model's own variables are never modified.
    """

    def __init__(self, model: keras.Model, targets: str = "trainable", noise: str = "additive",
                 clean: dict | None = None):
        """`clean`: the model's weight values if already taken (models.weight_values), e.g. by the Evaluator."""
        ops = keras.ops
        self.clean = clean if clean is not None else models.weight_values(model)
        self.targets = [v.path for v in TARGETS[targets](model)]
        if not self.targets:
            raise LrnoiseError(f"model {model.name} has no weights in target set {targets!r}")
        self.noise = NOISE_MODELS[noise]
        self.sigma_w = {p: ops.std(self.clean[p]) for p in self.targets}  # eq. 6: per-tensor std
        self.shapes = [tuple(self.clean[p].shape) for p in self.targets]
        sizes = [int(np.prod(shape)) for shape in self.shapes]
        self.split_at = list(np.cumsum(sizes)[:-1])
        self.flat_clean = ops.concatenate([ops.reshape(self.clean[p], [-1]) for p in self.targets])  # total
        self.flat_sigma = ops.concatenate([ops.full([n], self.sigma_w[p], dtype=self.flat_clean.dtype)
                                           for p, n in zip(self.targets, sizes)])  # total

    def draw(self, eta: float, seed: int) -> dict:
        """One noisy realisation of every targeted tensor, from one seed."""
        flat = self.noise(self.flat_clean, self.flat_sigma, eta, int(seed))
        parts = keras.ops.split(flat, self.split_at) if self.split_at else [flat]
        values = dict(self.clean)
        for path, part, shape in zip(self.targets, parts, self.shapes):
            values[path] = keras.ops.reshape(part, shape)
        return values


def draw_seed(seed: int, eta: float, trial: int) -> int:
    """The seed of draw (seed, eta, trial): the same eta draws the same noise whatever the list of etas."""
    return int(np.random.SeedSequence([seed, int(round(eta * 1e6)), trial]).generate_state(1)[0] % (2 ** 31 - 1))


def ci95(values: np.ndarray) -> float:
    """Half-width of the 95 % confidence interval of the mean (Student t; 0 for fewer than 2 values)."""
    n = len(values)
    if n < 2:
        return 0.0
    from scipy import stats
    return float(stats.t.ppf(0.975, n - 1) * np.std(values, ddof=1) / np.sqrt(n))


@dataclass
class NoiseResult:
    baseline_accuracy: float  # a_0
    draws: pd.DataFrame  # one row per draw: eta, trial, accuracy
    summary: pd.DataFrame = field(init=False)  # one row per eta (see summarize)
    avg_normalized_accuracy: float = field(init=False)  # A_avr (eq. 9)

    def __post_init__(self):
        self.summary = summarize(self.draws, self.baseline_accuracy)
        self.avg_normalized_accuracy = float(self.summary["normalized_accuracy"].mean())


def summarize(draws: pd.DataFrame, baseline_accuracy: float) -> pd.DataFrame:
    """Eq. 7-8 per eta from the per-draw accuracies, with spread: std (ddof=1) and 95 % CI half-width."""
    rows = []
    for eta, group in draws.groupby("eta", sort=False):
        acc = group["accuracy"].to_numpy()
        mean = float(acc.mean())  # eq. 7
        std = float(acc.std(ddof=1)) if len(acc) > 1 else 0.0
        rows.append({"eta": eta, "trials": len(acc), "accuracy": mean, "accuracy_std": std,
                     "accuracy_ci95": ci95(acc), "normalized_accuracy": mean / baseline_accuracy,  # eq. 8
                     "normalized_accuracy_std": std / baseline_accuracy,
                     "normalized_accuracy_ci95": ci95(acc) / baseline_accuracy})
    return pd.DataFrame(rows)


def evaluate(model: keras.Model, x: np.ndarray, y: np.ndarray, etas=PAPER_ETAS, trials=DEFAULT_TRIALS,
             seed: int = 0, targets: str = "trainable", noise: str = "additive",
             ci_target: float = DEFAULT_CI_TARGET, max_trials: int = DEFAULT_MAX_TRIALS,
             batch_size: int = 1000, log=print) -> NoiseResult:
    """Clean accuracy a_0, then `trials` noisy draws per eta (or, with trials='auto', until the CI is tight)."""
    check_options(etas, trials, targets, noise, ci_target, max_trials)
    evaluator = models.Evaluator(model, x, y, batch_size)
    injector = Injector(model, targets, noise, clean=evaluator.clean)
    baseline = evaluator()  # a_0, same evaluation code as every draw
    log(f"baseline_accuracy {baseline:.4f}  ({len(injector.targets)} weight tensors get {noise} noise)")
    rows = []
    for eta in etas:
        accs, started, shown = [], time.perf_counter(), time.perf_counter()
        while _more(accs, trials, ci_target, max_trials):
            accs.append(noisy_accuracy(evaluator, injector, eta, seed, len(accs)))
            rows.append({"eta": eta, "trial": len(accs) - 1, "accuracy": accs[-1]})
            if time.perf_counter() - shown > 10:  # long evaluations show life
                shown = time.perf_counter()
                log(f"  eta {eta:g}: {len(accs)} draws, running mean accuracy {np.mean(accs):.4f}")
        log(f"eta {eta:g}: {len(accs)} draws  accuracy {np.mean(accs):.4f} +- {ci95(np.array(accs)):.4f}  "
            f"normalized {np.mean(accs) / baseline:.4f}  ({time.perf_counter() - started:.1f}s)")
    return NoiseResult(baseline, pd.DataFrame(rows, columns=["eta", "trial", "accuracy"]))


def noisy_accuracy(evaluator: models.Evaluator, injector: Injector, eta: float, seed: int, trial: int) -> float:
    """One draw: noisy weights into the evaluator, test accuracy out (eta = 0: the clean model, A = 1 exactly)."""
    evaluator.load(injector.clean if eta == 0 else
                   injector.draw(eta, draw_seed(seed, eta, trial)))
    return evaluator()


def _more(accs: list, trials, ci_target: float, max_trials: int) -> bool:
    if trials != "auto":
        return len(accs) < trials
    if len(accs) < MIN_AUTO_TRIALS:
        return True
    return len(accs) < max_trials and ci95(np.array(accs)) >= ci_target


def draw_noise_curve(ax, summary: pd.DataFrame, label: str | None = None) -> None:
    """Normalised accuracy (%) vs eta (%) with eta = 0 at 1 and 95 % CI error bars (Figures 1-2 style)."""
    summary = summary[summary["eta"] > 0].sort_values("eta")
    eta = np.concatenate([[0.0], summary["eta"].to_numpy()]) * 100
    value = np.concatenate([[1.0], summary["normalized_accuracy"].to_numpy()]) * 100
    err = np.concatenate([[0.0], summary["normalized_accuracy_ci95"].fillna(0).to_numpy()]) * 100
    ax.errorbar(eta, value, yerr=err, marker="o", capsize=3, label=label)
    ax.set_xlabel("noise form factor eta (%)")
    ax.set_ylabel("normalised test accuracy (%)")
    ax.grid(alpha=0.3)


# ---------------------------------------------------------------- the tracked evaluation (`lrnoise noise-eval`)
def noise_eval(run_id: str | None = None, model_uri: str | None = None, dataset: str | None = None,
               data_dir: str | None = None, etas=PAPER_ETAS, trials=DEFAULT_TRIALS, seed: int = 0,
               targets: str = "trainable", noise: str = "additive", ci_target: float = DEFAULT_CI_TARGET,
               max_trials: int = DEFAULT_MAX_TRIALS, experiment: str | None = None,
               batch_size: int = 1000) -> tuple[str, NoiseResult]:
    """Evaluates a training run's model (or any model URI) in a noise-eval run, child of the training run.

    Returns (noise-eval run id, result). The summary is also written onto the training run.
    """
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from lrnoise import data, tracking

    check_options(etas, trials, targets, noise, ci_target, max_trials)
    if bool(run_id) == bool(model_uri):
        raise LrnoiseError("give exactly one of --run-id (a training run) or --model-uri (models:/...)")
    source = tracking.source_of(run_id=run_id, model_uri=model_uri)  # training run or None
    if run_id:
        model_uri = tracking.model_uri_of_run(run_id)
    if dataset is None:
        dataset = tracking.dataset_of(source) if source is not None else None
        if dataset is None:
            raise LrnoiseError(f"model {model_uri} comes from no lrnoise training run: pass --dataset")
    ds = data.load(dataset, data_dir=data_dir)
    model = tracking.load_model(model_uri)
    if tuple(model.input_shape[1:]) != ds.input_shape:
        raise LrnoiseError(f"model {model_uri} takes inputs {model.input_shape[1:]}, {dataset} images are "
                           f"{ds.input_shape}: pass the dataset it was trained on")
    source_id = source.info.run_id if source is not None else None
    params = tracking.noise_params(etas, trials, seed, targets, noise, ci_target, max_trials)
    exp_name = experiment or (tracking.experiment_name(source.info.experiment_id) if source else
                              tracking.DEFAULT_EXPERIMENT)
    tags = {tracking.EVALUATED_MODEL: model_uri}
    if source_id:
        tags[tracking.SOURCE_RUN_ID] = source_id
    with tracking.run(exp_name, "noise_eval", parent_run_id=source_id, tags=tags,
                      run_name=f"noise-{source.info.run_name if source else dataset}"), tracking.temp_dir() as tmp:
        eval_run_id = tracking.active_run_id()
        tracking.log_params(params)
        print(f"noise-eval run {eval_run_id} of {model_uri} on {dataset} ({len(ds.x_test)} test images)")
        result = evaluate(model, ds.x_test, ds.y_test, etas, trials, seed, targets, noise, ci_target,
                          max_trials, batch_size)
        tracking.log_noise_result(result, source_id)
        draws = result.draws.assign(normalized_accuracy=result.draws["accuracy"] / result.baseline_accuracy)
        draws.to_csv(f"{tmp}/draws.csv", index=False)
        result.summary.to_csv(f"{tmp}/summary.csv", index=False)
        fig, ax = plt.subplots(figsize=(5, 3.5))
        draw_noise_curve(ax, result.summary, label=f"A_avr = {result.avg_normalized_accuracy:.3f}")
        ax.set_title(f"{dataset}: normalised accuracy under {noise} weight noise")
        ax.legend()
        fig.tight_layout()
        fig.savefig(f"{tmp}/noise_curve.png", dpi=120)
        plt.close(fig)
        tracking.log_artifacts(tmp)
        print(f"avg_normalized_accuracy {result.avg_normalized_accuracy:.4f}")
        print(f"run_id {eval_run_id}", flush=True)
    return eval_run_id, result
