"""`lrnoise` command line: a thin Typer layer over train / noise-eval / report / study. Each command's options
are its configuration dataclasses' fields (cli_options.py); the command builds the objects once, validates them
once, checks the store and the data, and only then imports the layer that does the work (and TensorFlow)."""

from __future__ import annotations

import functools
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # keep TensorFlow's start-up chatter off the terminal

import typer

from lrnoise import names
from lrnoise.cli_options import build, command, extra_option
from lrnoise.config import DATASETS, Execution, TrainConfig, check_choice, flag
from lrnoise.errors import LrnoiseError
from lrnoise.grid import StudySpec
from lrnoise.noise import noise_config
from lrnoise.noise.noise_config import NoiseConfig
from lrnoise.settings import ReportSettings, StudySettings

app = typer.Typer(
    help="How learning rate and optimizer shape the analog-noise resistance of deep nets.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


def parse_options(text: str | None) -> tuple:
    """--noise-option 'g_max=10,drift_compensation=false' -> (('drift_compensation', False), ('g_max', 10.0))."""
    if not text:
        return ()
    pairs = []
    for part in (p.strip() for p in text.split(",") if p.strip()):
        name, sep, value = part.partition("=")
        if not sep:
            raise LrnoiseError(f"--noise-option must be NAME=VALUE pairs separated by commas, got {part!r}")
        lowered = value.strip().lower()
        if lowered in ("true", "false"):
            pairs.append((name.strip(), lowered == "true"))
            continue
        try:
            pairs.append((name.strip(), float(value)))
        except ValueError:
            raise LrnoiseError(f"--noise-option {name.strip()} must be a number or true/false, got {value!r}") from None
    return tuple(sorted(pairs))


@app.callback()
def _group():
    """Train models, inject analog noise, and report the paper's tables from MLflow."""


def one_line_errors(fn):
    """Also quiets MLflow's and alembic's INFO chatter (database set-up) so an error stays one line.

    Bad input: one line on stderr naming what was wrong and what is allowed, exit status 2."""
    from lrnoise.store import session

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        notice = session.file_store_notice()
        if notice:
            print(notice, file=sys.stderr)
        try:
            with session.quiet_loggers():
                return fn(*args, **kwargs)
        except LrnoiseError as exc:
            print(f"error: {exc}", file=sys.stderr)
            raise typer.Exit(2) from None
        except Exception as exc:  # the tracking server refused or went away for longer than MLflow's retries
            message = session.server_error(exc)
            if message is None:
                raise
            print(f"error: {message}", file=sys.stderr)
            raise typer.Exit(2) from None

    return wrapper


DATA_DIR = extra_option("data_dir", str | None, None, "folder with the official CIFAR archives or their folders")


@app.command()
@one_line_errors
@command(
    TrainConfig,
    Execution,
    extra=(
        DATA_DIR,
        extra_option("experiment", str, names.DEFAULT_EXPERIMENT, "MLflow experiment name"),
        extra_option("registered_model", str | None, None, "registry name [default: lrnoise-<dataset>-<model>]"),
        extra_option("resume", str | None, None, "RUN_ID of an interrupted training run to continue"),
    ),
)
def train(**values):
    """Train one model with MLflow tracking; the model is logged and registered."""
    from lrnoise.data import sources
    from lrnoise.store import lookup, session

    execution = build(Execution, values).validate()
    asked = build(TrainConfig, values).validate()
    resume = values["resume"] or None
    if resume:
        given = [f for f, value in asked.params().items() if value != TrainConfig().params().get(f)]
        if given:  # a resumed run continues its own configuration: nothing given is ignored
            raise LrnoiseError(f"--resume continues the run's own configuration: drop {flag(given[0])}")
        config = TrainConfig.from_params(lookup.resumable_training(resume).data.params)
    else:
        config = asked
    sources.require([config.dataset], values["data_dir"] or None)  # before any run exists
    if not resume:  # the user's right to write the experiment, too, is checked before TensorFlow is imported
        session.writable_experiment(values["experiment"])
    from lrnoise.training.train import train as run_train

    run_train(
        config,
        data_dir=values["data_dir"] or None,
        experiment=values["experiment"],
        registered_model=values["registered_model"] or None,
        resume=resume,
        execution=execution,
    )


@app.command("noise-eval")
@one_line_errors
@command(
    NoiseConfig,
    extra=(
        extra_option("run_id", str | None, None, "a finished lrnoise training run"),
        extra_option(
            "model_uri", str | None, None, "models:/<name>/<version>, models:/<name>@<alias> or models:/<model_id>"
        ),
        extra_option("dataset", str | None, None, "override the training run's dataset (needed for a bare URI)"),
        DATA_DIR,
        extra_option("batch_size", int, 1000, "evaluation batch size"),
        extra_option("experiment", str | None, None, "[default: the training run's experiment]"),
        extra_option("force", bool, False, "evaluate even a model that did not learn"),
    ),
)
def noise_eval(**values):
    """Inject analog weight noise into a trained model and log the paper's eq. 7-9 statistics."""
    from lrnoise.store import lookup

    config = build(NoiseConfig, values, parsers={"options": parse_options}).validate()
    if values["batch_size"] < 1:
        raise LrnoiseError(f"batch size must be >= 1, got {values['batch_size']}")
    if values["dataset"]:
        check_choice("dataset", values["dataset"], DATASETS)
    # the run, the model and the right to write: checked before the noise code (and TensorFlow) is imported
    target = lookup.evaluation_target(
        values["run_id"] or None, values["model_uri"] or None, values["experiment"] or None, values["force"]
    )
    from lrnoise.noise.evaluation import noise_eval as run_noise_eval
    from lrnoise.report import evaluation_figure

    run_noise_eval(
        config,
        run_id=values["run_id"] or None,
        model_uri=values["model_uri"] or None,
        dataset=values["dataset"] or None,
        data_dir=values["data_dir"] or None,
        experiment=values["experiment"] or None,
        batch_size=values["batch_size"],
        force=values["force"],
        target=target,
        draw=evaluation_figure.write_noise_curve,
    )


@app.command()
@one_line_errors
@command(ReportSettings)
def report(**values):
    """Tables II-III, Figures 1-8 (those the runs span), claims, the paper comparison and the sweet spots, from the
    tracking server."""
    from lrnoise.store import session

    settings = build(ReportSettings, values).validate()
    with session.fail_fast_http():  # this command only
        session.find_experiment(settings.experiment)  # a missing experiment or a refused user: before heavy imports
        from lrnoise.report import assembly

        built = assembly.build_and_write(settings)
    from lrnoise.report import console

    print(console.summary_text(built))


@app.command()
@one_line_errors
@command(StudySpec, StudySettings)
def study(**values):
    """Run the whole grid (resumable: finished runs are reused; safe beside other studies), then the report."""
    from lrnoise.data import sources
    from lrnoise.store import session

    settings = build(StudySettings, values).validate()
    spec = build(StudySpec, values).validate()  # the grid's names and values, before TensorFlow is imported
    noise_config.study_configs(spec)  # and its noise configurations (levels, trials)
    sources.require(sorted({c.dataset for c in spec.train_configs()}), settings.data_dir)  # before any run exists
    if not (settings.executor == "ray" and settings.ray_address):  # (a Ray cluster's study checks its server first)
        session.writable_experiment(settings.experiment)  # before TensorFlow is imported
    from lrnoise.study import runner

    outcomes, _ = runner.run_study(spec, settings)
    failed = [o for o in outcomes if o.status != "ok"]
    if failed:
        print(f"error: {len(failed)} of {len(outcomes)} configurations failed", file=sys.stderr)
        raise typer.Exit(1)


def main():
    """The `lrnoise` command. Typer's own usage errors (a value of the wrong type, an unknown option, a missing
    argument) are one line too, like lrnoise's: "error: ... (lrnoise train --help)", exit status 2."""
    from typer.exceptions import TyperException

    try:
        code = app(standalone_mode=False)  # typer.Exit(n) comes back as n
    except typer.Abort:
        print("error: aborted", file=sys.stderr)
        sys.exit(1)
    except TyperException as exc:  # Typer's (vendored Click's) UsageError and its kinds carry a ctx and a message
        context = getattr(exc, "ctx", None)
        message = " ".join(exc.format_message().split())
        print(f"error: {message} ({context.command_path if context else 'lrnoise'} --help)", file=sys.stderr)
        sys.exit(getattr(exc, "exit_code", 2))
    sys.exit(code if isinstance(code, int) else 0)


if __name__ == "__main__":
    main()
