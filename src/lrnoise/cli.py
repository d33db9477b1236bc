"""`lrnoise` command line: a thin Typer layer over train / noise / report / study."""
from __future__ import annotations

import functools
import logging
import os
import sys
from typing import Optional

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # keep TensorFlow's start-up chatter off the terminal

import typer

from lrnoise import tracking
from lrnoise.errors import LrnoiseError

app = typer.Typer(help="How learning rate and optimizer shape the analog-noise resistance of deep nets.",
                  no_args_is_help=True, pretty_exceptions_enable=False, add_completion=False)


def parse_list(text: str | None, cast, what: str) -> tuple | None:
    """'0.1, 0.2' -> (0.1, 0.2); None or '' -> None (not given)."""
    if not text:
        return None
    try:
        values = tuple(cast(part.strip()) for part in text.split(",") if part.strip())
    except ValueError:
        raise LrnoiseError(f"--{what} must be a comma-separated list, got {text!r}") from None
    if not values:
        raise LrnoiseError(f"--{what} is empty")
    return values


def parse_trials(text: str | None):
    """'auto', an integer, or None (not given)."""
    if not text:
        return None
    if text.strip() == "auto":
        return "auto"
    try:
        return int(text)
    except ValueError:
        raise LrnoiseError(f"trials must be an integer >= 1 or 'auto', got {text!r}") from None


@app.callback()
def _group():
    """Train models, inject analog noise, and report the paper's tables from MLflow."""


def one_line_errors(fn):
    """Also quiets MLflow's and alembic's INFO chatter (database set-up) so an error stays one line.

    Bad input: one line on stderr naming what was wrong and what is allowed, exit status 2."""
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        for name in ("mlflow", "alembic"):
            logging.getLogger(name).setLevel(logging.WARNING)
        try:
            return fn(*args, **kwargs)
        except LrnoiseError as exc:
            print(f"error: {exc}", file=sys.stderr)
            raise typer.Exit(2)
    return wrapper


@app.command()
@one_line_errors
def train(
    dataset: str = typer.Option("digits", help="digits | cifar10 | cifar100"),
    model: str = typer.Option("resnet20", help="resnet20 | resnet32 | resnet44 | resnet56"),
    optimizer: str = typer.Option("adam", help="sgd | momentum | nesterov | adam | nadam | adamax"),
    lr: float = typer.Option(0.001, help="constant learning rate"),
    epochs: int = typer.Option(100, help="maximum epochs (early stopping may end sooner)"),
    batch_size: int = typer.Option(128),
    seed: int = typer.Option(0),
    patience: int = typer.Option(10, help="early-stopping patience on val_loss; 0 = train all epochs"),
    shortcut: str = typer.Option("A", help="ResNet shortcut: A (zero-pad identity) or B (1x1 projection)"),
    data_dir: Optional[str] = typer.Option(None, help="folder with the official CIFAR archives or their folders"),
    experiment: str = typer.Option(tracking.DEFAULT_EXPERIMENT, help="MLflow experiment name"),
    registered_model: Optional[str] = typer.Option(None, help="registry name [default: lrnoise-<dataset>-<model>]"),
    resume: Optional[str] = typer.Option(None, help="RUN_ID of an interrupted training run to continue"),
    mixed_precision: str = typer.Option("none", help="none | bf16 | fp16 (16-bit compute, float32 weights)"),
    jit_compile: Optional[bool] = typer.Option(None, "--jit-compile/--no-jit-compile",
                                               help="XLA-compile the training step [default: Keras decides]"),
    steps_per_execution: int = typer.Option(1, help="training steps per compiled call"),
):
    """Train one model with MLflow tracking; the model is logged and registered."""
    from lrnoise.train import Execution, TrainConfig, resume_config, train as run_train
    if resume:
        config = resume_config(resume)
    else:
        config = TrainConfig(dataset=dataset, model=model, optimizer=optimizer, lr=lr, batch_size=batch_size,
                             epochs=epochs, seed=seed, shortcut=shortcut, patience=patience)
    run_train(config, data_dir=data_dir or None, experiment=experiment, registered_model=registered_model or None,
              resume=resume, execution=Execution(mixed_precision, jit_compile, steps_per_execution))


@app.command("noise-eval")
@one_line_errors
def noise_eval(
    run_id: Optional[str] = typer.Option(None, help="a finished lrnoise training run"),
    model_uri: Optional[str] = typer.Option(None, help="models:/<name>/<version>, models:/<name>@<alias> or "
                                                       "models:/<model_id>"),
    dataset: Optional[str] = typer.Option(None, help="override the training run's dataset (needed for a bare URI)"),
    data_dir: Optional[str] = typer.Option(None, help="folder with the official CIFAR archives"),
    etas: str = typer.Option("0.01,0.05,0.1,0.2,0.3,0.4", help="noise form factors (0.1 = 10 %)"),
    trials: str = typer.Option("10", help="draws per eta, or 'auto' (until the 95 % CI is below --ci-target)"),
    ci_target: float = typer.Option(0.5, help="--trials auto: target 95 % CI half-width of a^eta, in points (%)"),
    max_trials: int = typer.Option(100, help="--trials auto: most draws per eta"),
    seed: int = typer.Option(0, help="the same seed reproduces every draw"),
    targets: str = typer.Option("trainable", help="trainable | kernels | all"),
    noise: str = typer.Option("additive", help="additive (the paper's) | multiplicative"),
    batch_size: int = typer.Option(1000, help="evaluation batch size"),
    experiment: Optional[str] = typer.Option(None, help="[default: the training run's experiment]"),
):
    """Inject analog weight noise into a trained model and log the paper's eq. 7-9 statistics."""
    from lrnoise import noise as noise_module
    noise_module.noise_eval(run_id=run_id or None, model_uri=model_uri or None, dataset=dataset or None,
                            data_dir=data_dir or None, etas=parse_list(etas, float, "etas"),
                            trials=parse_trials(trials), seed=seed, targets=targets, noise=noise,
                            ci_target=ci_target / 100, max_trials=max_trials, experiment=experiment or None,
                            batch_size=batch_size)


@app.command()
@one_line_errors
def report(
    experiment: str = typer.Option(tracking.DEFAULT_EXPERIMENT, help="MLflow experiment to report on"),
    out: Optional[str] = typer.Option(None, help="output folder [default: reports/<experiment>]"),
    dataset: Optional[str] = typer.Option(None, help="only this dataset"),
    model: Optional[str] = typer.Option(None, help="only this model"),
    optimizer: Optional[str] = typer.Option(None, help="only this optimizer (tables use adam by default)"),
    max_accuracy_drop: float = typer.Option(1.0, help="sweet spot: baseline within this many points of the best"),
):
    """Tables II-III, Figures 1-4, the paper comparison and the sweet spot, from the tracking server."""
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "1")  # an unreachable server fails fast
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "20")
    from lrnoise import report as report_module
    built = report_module.build(experiment, out or None, dataset or None, model or None, optimizer or None,
                                max_accuracy_drop / 100)
    print(report_module.summary_text(built))


@app.command()
@one_line_errors
def study(
    preset: str = typer.Option("demo", help="demo (digits, minutes on a CPU) | paper | optimizers"),
    datasets: Optional[str] = typer.Option(None, help="override, e.g. cifar10,cifar100"),
    models: Optional[str] = typer.Option(None, help="override, e.g. resnet20,resnet32"),
    optimizers: Optional[str] = typer.Option(None, help="override, e.g. adam,sgd"),
    lrs: Optional[str] = typer.Option(None, help="override, e.g. 0.0005,0.001"),
    seeds: Optional[str] = typer.Option(None, help="override, e.g. 0,1,2"),
    epochs: Optional[str] = typer.Option(None, help="override the preset's maximum epochs"),  # str: '' = unset
    etas: Optional[str] = typer.Option(None, help="override the noise form factors"),
    trials: Optional[str] = typer.Option(None, help="override draws per eta (or 'auto')"),
    patience: Optional[int] = typer.Option(None, help="override early-stopping patience"),
    batch_size: Optional[int] = typer.Option(None, help="override the batch size"),
    experiment: str = typer.Option(tracking.DEFAULT_EXPERIMENT, help="MLflow experiment"),
    workers: int = typer.Option(1, help="configurations at once (processes; one GPU each when GPUs exist)"),
    executor: str = typer.Option("local", help="local | ray"),
    ray_address: Optional[str] = typer.Option(None, help="Ray cluster address [default: a local instance]"),
    data_dir: Optional[str] = typer.Option(None, help="folder with the official CIFAR archives"),
    report: bool = typer.Option(True, help="build the report at the end"),
    report_dir: Optional[str] = typer.Option(None, help="report folder [default: reports/<experiment>]"),
):
    """Run the whole grid (resumable: finished runs are reused), then the report."""
    from lrnoise import study as study_module
    extra = {k: v for k, v in {"patience": patience, "batch_size": batch_size}.items() if v is not None}
    spec = study_module.StudySpec(
        preset=preset, datasets=parse_list(datasets, str, "datasets"), models=parse_list(models, str, "models"),
        optimizers=parse_list(optimizers, str, "optimizers"), lrs=parse_list(lrs, float, "lrs"),
        seeds=parse_list(seeds, int, "seeds"), epochs=int(epochs) if epochs else None,
        etas=parse_list(etas, float, "etas"), trials=parse_trials(trials), extra=extra)
    outcomes, _ = study_module.run_study(spec, experiment, workers, executor, ray_address or None,
                                         data_dir or None, report, report_dir or None)
    failed = [o for o in outcomes if o.status != "ok"]
    if failed:
        print(f"error: {len(failed)} of {len(outcomes)} configurations failed", file=sys.stderr)
        raise typer.Exit(1)


def main():
    app()


if __name__ == "__main__":
    main()
