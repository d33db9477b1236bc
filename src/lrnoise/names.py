"""Every name lrnoise writes to or reads from a tracking store, defined once: params, metrics, tags, artifact
folders, and the few pure rules that spell a name (a per-level metric, a noise evaluation's params, a
configuration's key). Imports no MLflow: the noise math, the statistics and the tests read names from here.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json

import numpy as np

from lrnoise.config import TrainConfig
from lrnoise.grid import SWEPT, StudySpec

DEFAULT_EXPERIMENT = "lrnoise"
PAPER_NOISE_CONFIG = "additive-paper"  # the paper's noise configuration's name (its tables keep the bare metric names)
NORMALIZATION_LAYER = "input_normalization"  # the model's input normalisation layer: left clean by noise injection

# ---- names: params
TRAIN_PARAMS = tuple(f.name for f in dataclasses.fields(TrainConfig))  # train_noise: logged only when > 0
DATASET_PARAM = "dataset"  # the training param naming the data (a TrainConfig field: tests/test_tracking.py)
# A noise evaluation's params: its NoiseConfig fields, prefixed so they never meet the `mlflow run` entry point's
# own (pre-logged, unprefixed) inputs. Measured: model, levels, targets, fold_bn, options; precision: the rest.
NOISE_PARAM_PREFIX = "noise."
VERSION_TAGS = SWEPT  # registry version tags: the fields a study sweeps
STUDY_PARAMS = tuple(f.name for f in dataclasses.fields(StudySpec) if f.name != "batch_size")  # = batch_sizes
# ---- names: metrics
EPOCH_METRICS = ("loss", "accuracy", "val_loss", "val_accuracy")
BASELINE_ACCURACY = "baseline_accuracy"  # a_0: clean test accuracy (noise-injection training: BN re-estimated clean)
BASELINE_ACCURACY_NOISY_BN = "baseline_accuracy_noisy_bn"  # noise-injection training: a_0 with BN stats as trained
EPOCHS_TRAINED = "epochs_trained"  # training epochs (with budget steps: blocks of the reference batch size's updates)
OPTIMIZER_STEPS = "optimizer_steps"  # updates behind the evaluated weights (the kept epoch x updates per epoch)
BEST_EPOCH = "best_epoch"  # the epoch of the lowest val_loss (budget epochs: its weights are the ones kept)
NONFINITE_LOSS_EPOCH = "nonfinite_loss_epoch"  # the epoch whose training loss went NaN / inf (training stopped)
AVG_NORMALIZED_ACCURACY = "avg_normalized_accuracy"  # A_avr, eq. 9
NORMALIZED_ACCURACY = "normalized_accuracy"  # A^x, eq. 8 (per level: normalized_accuracy_<axis>_<label>)
NORMALIZED_ACCURACY_CI95 = "normalized_accuracy_ci95"  # its 95 % CI over the draws (per level)
# eq. 1-3 measured: per epoch (step = epoch) and on the final weights / as the mean over training
GRAD_NOISE_C = "grad_noise_c"  # C_hat, eq. 3
GRAD_NOISE_POWER = "grad_noise_power"  # lr^2 C_hat / B, eq. 2's bound for this step size
UPDATE_NOISE_POWER = "update_noise_power"  # the same estimate on an adaptive optimizer's actual step
FINAL_SUFFIX, MEAN_SUFFIX = "_final", "_mean"
GRAD_NOISE_METRICS = {"c": GRAD_NOISE_C, "power": GRAD_NOISE_POWER, "update_power": UPDATE_NOISE_POWER}


def grad_noise_metrics(estimate: dict, suffix: str = "") -> dict:
    """A gradnoise estimate ({c, power, update_power}) under its metric names (+ _final / _mean)."""
    return {GRAD_NOISE_METRICS[k] + suffix: v for k, v in estimate.items()}


GRAD_NOISE_C_MEAN = GRAD_NOISE_C + MEAN_SUFFIX  # C itself as measured (eq. 3), its mean over training
GRAD_NOISE_POWER_MEAN = GRAD_NOISE_POWER + MEAN_SUFFIX
UPDATE_NOISE_POWER_MEAN = UPDATE_NOISE_POWER + MEAN_SUFFIX
NONFINITE_DRAWS = "nonfinite_draws"  # noisy draws whose outputs held NaN / inf (counted as wrong predictions)
STUDY_METRICS = ("configurations", "failed", "trained", "reused", "did_not_learn")  # on a study's parent run
# ---- names: tags
KIND = "lrnoise.kind"  # train | noise_eval | report | study
SOURCE_RUN_ID = "source_run_id"  # on a noise-eval run: the training run it evaluated
EVALUATION_RUN_ID = (
    "lrnoise.evaluation_run_id"  # on an `mlflow run -e noise_eval` run in another experiment: the evaluation
)
REPORT_RUN_ID = "lrnoise.report_run_id"  # on an `mlflow run -e report` run in another experiment: where the report is
PARENT_RUN_ID = "mlflow.parentRunId"
MODEL_URI = "lrnoise.model_uri"  # on a training run: models:/<model_id> of the model it logged
EVALUATED_MODEL = "lrnoise.evaluated_model"  # on a noise-eval run: the model URI it evaluated
CONFIG_KEY = "lrnoise.config"  # hash of the configuration's canonical params, for identical-run lookups
NOISE_CONFIG = "lrnoise.noise_config"  # on a noise-eval run: the key of what it measured (NoiseConfig.key)
NOISE_CONFIG_NAME = "lrnoise.noise_config_name"  # ... and its readable name (additive-paper, pcm-1s-1y, ...)
HEARTBEAT = "lrnoise.heartbeat"  # on a running train / study / claim run: unix time of its owner's last sign of life
OWNER = "lrnoise.owner"  # ... and who holds it: host:pid:random
LEARNED = "lrnoise.learned"  # on a training run and its registry version: "false" when a_0 is not above chance
RESUMED_AFTER_EPOCH = "lrnoise.resumed_after_epoch"  # on a training run continued from a checkpoint: its epoch
SEMANTICS = "lrnoise.semantics"  # on a train / noise-eval run: the code's TRAINING_ / NOISE_SEMANTICS (none: 0)
LRNOISE_VERSION = "lrnoise.version"  # ... and the lrnoise version that made it
EXPERIMENT_KIND = ("mlflow.experimentKind", "custom_model_development")
MODEL_ARTIFACT = "model"
CHECKPOINT_DIR = "checkpoint"
TRAIN_SPLIT, TEST_SPLIT = "train", "test"  # dataset inputs' contexts: the split a run used


def level_metric(column: str, level_name: str, label: str) -> str:
    """A per-level metric: accuracy_eta_10 (a^eta at eta = 10 %), normalized_accuracy_t_1d (A^t at t = 1 day)."""
    return f"{column}_{level_name}_{label}"


def summary_prefix(config_name: str, is_paper: bool) -> str:
    """Where a configuration's summary sits on the training run: the paper's keeps today's bare names
    (avg_normalized_accuracy, normalized_accuracy_eta_10); any other is grouped under '<name>/'."""
    return "" if is_paper else f"{config_name}/"


def registered_model(dataset: str, model: str) -> str:
    """The registry name a training's model gets unless one is given: lrnoise-<dataset>-<model>."""
    return f"lrnoise-{dataset}-{model}"


def noise_params(config_fields: dict) -> dict:
    """A noise evaluation's params from its configuration's fields (options as name=value pairs)."""
    params = {}
    for key, value in config_fields.items():
        if key == "options":
            value = ",".join(f"{k}={canonical(v)}" for k, v in value) or "none"
        params[NOISE_PARAM_PREFIX + key] = value
    return params


def canonical(value) -> str:
    """How a param value is written: floats in repr form (0.00075 -> '0.00075'), lists comma-joined."""
    if isinstance(value, (list, tuple)):
        return ",".join(canonical(v) for v in value)
    if isinstance(value, (float, np.floating)):
        return repr(float(value))
    return str(value)


def config_key(params: dict) -> str:
    """Hash of the canonical params: runs with equal keys ran the same configuration."""
    text = json.dumps({k: canonical(v) for k, v in sorted(params.items())}, sort_keys=True)
    return hashlib.sha1(text.encode()).hexdigest()


# ---------------------------------------------------------------- stores and experiments
