"""Models: the Keras model a training run logs, its registered version with the tags a study sweeps, registry
aliases, and a model loaded back or found from its training run."""

from __future__ import annotations

import functools
import json
from importlib import metadata

import mlflow
import numpy as np
from mlflow.exceptions import MlflowException
from mlflow.utils.mlflow_tags import MLFLOW_MODEL_VERSIONS

from lrnoise import names
from lrnoise.config import TrainConfig
from lrnoise.errors import LrnoiseError
from lrnoise.store import session


@functools.lru_cache(maxsize=8)
def _signature(input_shape: tuple, input_dtype: str, classes: int):
    """The model signature (images in, class probabilities out), worked out once per shape: no predict call."""
    from mlflow.models import infer_signature

    return infer_signature(np.zeros((1, *input_shape), input_dtype), np.zeros((1, classes), np.float32))


@functools.lru_cache(maxsize=1)
def _pip_requirements() -> list[str]:
    """keras and the backend the model was trained with (tensorflow by default), pinned to what ran."""
    import keras

    reqs = []
    for package in ("keras", keras.backend.backend()):  # backend names are their package names
        try:
            reqs.append(f"{package}=={metadata.version(package)}")
        except metadata.PackageNotFoundError:
            pass
    return reqs


def log_model(
    model, sample_input: np.ndarray, registered_model: str, config: TrainConfig, run_id: str, learned: bool = True
):
    """Logs the Keras model (mlflow.keras flavor) and registers it, the version tagged with every swept field
    (dataset, model, optimizer, lr, batch size, train noise, seed), the training run and whether it learned;
    returns (model_uri, model_version)."""
    version_tags = {
        **{k: names.canonical(getattr(config, k)) for k in names.VERSION_TAGS},
        names.SOURCE_RUN_ID: run_id,
        names.LEARNED: str(learned).lower(),
    }
    mlflow.set_tag(names.LEARNED, str(learned).lower())  # before the model: a run whose logging fails still says it
    signature = _signature(tuple(sample_input.shape[1:]), str(sample_input.dtype), int(model.output_shape[-1]))
    # No input example: MLflow would reload the model and predict on it to validate serving (one more model
    # load and prediction per training); the signature documents the input.
    info = mlflow.keras.log_model(
        model,
        name=names.MODEL_ARTIFACT,
        signature=signature,
        pip_requirements=list(_pip_requirements()),
        params=config.params(),  # the Models view shows (and compares) each model's configuration
    )
    version = _register(info.model_id, registered_model, run_id, version_tags)
    mlflow.set_tag(names.MODEL_URI, info.model_uri)
    return info.model_uri, version


DESCRIPTION = (
    "ResNets trained by lrnoise (Fagbohungbe & Qian's learning-rate / analog-noise study, reproduced and "
    "extended): one version per training run, tagged with the fields a study sweeps (dataset, model, optimizer, "
    "lr, batch_size, train_noise, seed), the training run (source_run_id) and whether it learned. `lrnoise report` "
    "points the aliases at the most noise-robust version of each dataset. Load one with "
    "mlflow.keras.load_model('models:/<name>@<alias>'): it takes raw images (uint8 values), returns class "
    "probabilities."
)


def logged_model_id(model_uri: str) -> str:
    """The logged model's id in a `models:/<model_id>` URI (what a training run's lrnoise.model_uri tag holds)."""
    return model_uri.removeprefix("models:/")


def _register(model_id: str, name: str, run_id: str, tags: dict) -> str:
    """A new version of registered model `name` (created if new) for logged model `model_id` of run `run_id`,
    created with its tags; returns the version. What log_model(registered_model_name=...) registers (source
    models:/<model_id>, run id, model id, and the logged model's link to its version) without its look-ups of the
    run's artifacts and logged models, and with the tags in the same request instead of one request per tag."""
    c = session.client()
    try:
        c.create_registered_model(name, description=DESCRIPTION)
    except MlflowException as exc:
        if exc.error_code not in ("RESOURCE_ALREADY_EXISTS", "ALREADY_EXISTS"):
            raise
    version = c.create_model_version(name, f"models:/{model_id}", run_id=run_id, tags=tags, model_id=model_id)
    if not session.is_http(session.tracking_uri()):  # a tracking server links the new logged model to its version
        c.set_logged_model_tags(
            model_id, {MLFLOW_MODEL_VERSIONS: json.dumps([{"name": version.name, "version": version.version}])}
        )
    return str(version.version)


def load_model(model_uri: str):
    """A Keras model from `models:/<name>/<version>`, `models:/<name>@<alias>`, `models:/<model_id>`, `runs:/...`."""
    try:
        return mlflow.keras.load_model(model_uri)
    except MlflowException as exc:
        raise LrnoiseError(f"cannot load model {model_uri!r}: {exc.message.splitlines()[0]}") from None
    except OSError as exc:
        raise LrnoiseError(f"cannot load model {model_uri!r}: {exc}") from None


def model_uri_of_run(run_id: str, run=None) -> str:
    """`models:/<model_id>` of the model a training run logged, or an error if it logged none. `run`: the run
    `run_id`, when the caller has fetched it already."""
    run = run or session.get_run(run_id)
    if names.MODEL_URI in run.data.tags:
        return run.data.tags[names.MODEL_URI]
    models = session.client().search_logged_models(
        [run.info.experiment_id], filter_string=f"source_run_id = '{run_id}'"
    )
    if not models:
        raise LrnoiseError(f"run {run_id} has no logged model: pass a finished training run or --model-uri")
    return f"models:/{models[0].model_id}"


def set_alias_for_run(run_id: str, alias: str) -> str | None:
    """Points registry alias `alias` at the model version a training run registered; returns 'name/version'."""
    c = session.client()
    versions = c.search_model_versions(f"run_id = '{run_id}'")
    if not versions:
        return None
    version = max(versions, key=lambda v: int(v.version))
    c.set_registered_model_alias(version.name, alias, version.version)
    return f"{version.name}/{version.version}"
