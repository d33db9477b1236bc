"""`lrnoise` command line: a thin Typer layer over train / noise / report / study."""

from __future__ import annotations

import functools
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # keep TensorFlow's start-up chatter off the terminal

import typer

from lrnoise import names
from lrnoise.config import EXECUTORS, REUSE, Execution, Placement, StudySpec, TrainConfig, check_choice
from lrnoise.data import loading
from lrnoise.errors import LrnoiseError
from lrnoise.store import leases, tracking

app = typer.Typer(
    help="How learning rate and optimizer shape the analog-noise resistance of deep nets.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


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


def parse_count(text: str | None, what: str) -> int | None:
    """'2' -> 2; None or '' -> None (not given)."""
    if not text or not text.strip():
        return None
    try:
        return int(text)
    except ValueError:
        raise LrnoiseError(f"--{what} must be a whole number, got {text!r}") from None


def parse_amount(text: str | None, what: str) -> float | None:
    """'0.5' -> 0.5; None or '' -> None (not given)."""
    if not text or not text.strip():
        return None
    try:
        return float(text)
    except ValueError:
        raise LrnoiseError(f"--{what} must be a number, got {text!r}") from None


def parse_trials(text: str | None):
    """'auto', an integer, or None (not given); anything else is passed on for NoiseConfig to refuse."""
    if not text:
        return None
    text = text.strip()
    try:
        return int(text)
    except ValueError:
        return text


def parse_options(text: str | None) -> tuple:
    """'g_max=10,drift_compensation=false' -> (('drift_compensation', False), ('g_max', 10.0))."""
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

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        notice = tracking.file_store_notice()
        if notice:
            print(notice, file=sys.stderr)
        try:
            with tracking.quiet_loggers():
                return fn(*args, **kwargs)
        except LrnoiseError as exc:
            print(f"error: {exc}", file=sys.stderr)
            raise typer.Exit(2) from None
        except Exception as exc:  # the tracking server refused or went away for longer than MLflow's retries
            message = tracking.server_error(exc)
            if message is None:
                raise
            print(f"error: {message}", file=sys.stderr)
            raise typer.Exit(2) from None

    return wrapper


# How a training runs (config.Execution): the same options on `train` and `study`
MIXED_PRECISION = typer.Option(Execution.mixed_precision, help="none | bf16 | fp16 (16-bit compute, float32 weights)")
JIT_COMPILE = typer.Option(
    Execution.jit_compile,
    "--jit-compile/--no-jit-compile",
    help="XLA-compile the training step [default: Keras decides]",
)
STEPS_PER_EXECUTION = typer.Option(Execution.steps_per_execution, help="training steps per compiled call")
GRAD_NOISE_BATCHES = typer.Option(
    Execution.grad_noise_batches, help="K minibatches per epoch for the gradient-noise estimate (eq. 3); 0 turns it off"
)
CHECKPOINT_EVERY = typer.Option(
    Execution.checkpoint_every, help="seconds of training between checkpoint uploads (0 = every epoch)"
)


@app.command()
@one_line_errors
def train(
    dataset: str = typer.Option(TrainConfig.dataset, help="digits | cifar10 | cifar100"),
    model: str = typer.Option(TrainConfig.model, help="resnet8 | resnet20 | resnet32 | resnet44 | resnet56"),
    optimizer: str = typer.Option(TrainConfig.optimizer, help="sgd | momentum | nesterov | adam | nadam | adamax"),
    lr: float = typer.Option(TrainConfig.lr, help="constant learning rate"),
    epochs: int = typer.Option(TrainConfig.epochs, help="maximum epochs (early stopping may end sooner)"),
    batch_size: int = typer.Option(TrainConfig.batch_size),
    seed: int = typer.Option(TrainConfig.seed),
    patience: int = typer.Option(
        TrainConfig.patience, help="early-stopping patience on val_loss; 0 = train all epochs (--budget steps: 0)"
    ),
    shortcut: str = typer.Option(
        TrainConfig.shortcut, help="ResNet shortcut: A (zero-pad identity) or B (1x1 projection)"
    ),
    train_noise: float = typer.Option(
        TrainConfig.train_noise,
        help="noise-injection training: eta of the additive "
        "weight noise N(0, (eta sigma_w)^2) drawn in every training step (0.05 = 5 %); "
        "0 = clean training",
    ),
    budget: str = typer.Option(
        TrainConfig.budget,
        help="epochs: --epochs passes over the data | steps: the optimizer updates --epochs passes take at "
        "--reference-batch-size (equal steps for every batch size; epochs and patience count in those units)",
    ),
    reference_batch_size: int = typer.Option(
        TrainConfig.reference_batch_size, help="budget steps: the batch size whose epochs set the updates"
    ),
    data_dir: str | None = typer.Option(None, help="folder with the official CIFAR archives or their folders"),
    experiment: str = typer.Option(names.DEFAULT_EXPERIMENT, help="MLflow experiment name"),
    registered_model: str | None = typer.Option(None, help="registry name [default: lrnoise-<dataset>-<model>]"),
    resume: str | None = typer.Option(None, help="RUN_ID of an interrupted training run to continue"),
    mixed_precision: str = MIXED_PRECISION,
    jit_compile: bool | None = JIT_COMPILE,
    steps_per_execution: int = STEPS_PER_EXECUTION,
    grad_noise_batches: int = GRAD_NOISE_BATCHES,
    checkpoint_every: float = CHECKPOINT_EVERY,
):
    """Train one model with MLflow tracking; the model is logged and registered."""
    execution = Execution(
        mixed_precision=mixed_precision,
        jit_compile=jit_compile,
        steps_per_execution=steps_per_execution,
        grad_noise_batches=grad_noise_batches,
        checkpoint_every=checkpoint_every,
    ).validate()
    if resume:
        config = TrainConfig.from_params(tracking.resumable_training(resume).data.params)
    else:
        config = TrainConfig(
            dataset=dataset,
            model=model,
            optimizer=optimizer,
            lr=lr,
            batch_size=batch_size,
            epochs=epochs,
            seed=seed,
            shortcut=shortcut,
            patience=patience,
            train_noise=train_noise,
            budget=budget,
            reference_batch_size=reference_batch_size,
        ).validate()
    loading.require([config.dataset], data_dir or None)  # before any run exists
    if not resume:  # the user's right to write the experiment, too, is checked before TensorFlow is imported
        tracking.writable_experiment(experiment)
    from lrnoise.training.train import train as run_train

    run_train(
        config,
        data_dir=data_dir or None,
        experiment=experiment,
        registered_model=registered_model or None,
        resume=resume,
        execution=execution,
    )


NOISE_HELP = "additive (the paper's: W + N(0, (eta sigma_w)^2)) | multiplicative | pcm (phase-change memory)"


def noise_config(
    noise: str,
    levels: str | None,
    targets: str | None,
    fold_bn: bool,
    options: str | None,
    trials: str | None,
    ci_target: float,
    max_trials: int,
    seed: int,
):
    """The NoiseConfig the options describe (defaults of the noise model for what is not given)."""
    from lrnoise.noise.injection import DEFAULT_TRIALS, NoiseConfig

    draws = parse_trials(trials)
    return NoiseConfig(
        noise=noise,
        levels=parse_list(levels, float, "levels"),
        targets=targets or None,
        fold_bn=fold_bn,
        options=parse_options(options),
        trials=DEFAULT_TRIALS if draws is None else draws,
        ci_target=ci_target,
        max_trials=max_trials,
        seed=seed,
    ).validate()


@app.command("noise-eval")
@one_line_errors
def noise_eval(
    run_id: str | None = typer.Option(None, help="a finished lrnoise training run"),
    model_uri: str | None = typer.Option(
        None, help="models:/<name>/<version>, models:/<name>@<alias> or models:/<model_id>"
    ),
    dataset: str | None = typer.Option(None, help="override the training run's dataset (needed for a bare URI)"),
    data_dir: str | None = typer.Option(None, help="folder with the official CIFAR archives"),
    noise: str = typer.Option("additive", help=NOISE_HELP),
    levels: str | None = typer.Option(
        None,
        "--levels",
        "--etas",
        help="noise levels: eta (0.1 = 10 %) for additive/multiplicative, "
        "inference time in seconds for pcm [the model's defaults]",
    ),
    targets: str | None = typer.Option(None, help="trainable | kernels | all [additive: trainable; pcm: kernels]"),
    fold_bn: bool = typer.Option(False, "--fold-bn/--no-fold-bn", help="noise onto the BN-folded kernels/biases"),
    noise_option: str | None = typer.Option(
        None, help="the noise model's options, e.g. pcm: g_max=25,drift_compensation=false,read_noise_scale=2"
    ),
    trials: str = typer.Option("10", help="draws per level, or 'auto' (until the 95 % CI is below --ci-target)"),
    ci_target: float = typer.Option(
        0.005, help="--trials auto: target 95 % CI half-width of a^x, a fraction (0.005 = 0.5 points)"
    ),
    max_trials: int = typer.Option(100, help="--trials auto: most draws per level"),
    seed: int = typer.Option(0, help="the same seed reproduces every draw"),
    batch_size: int = typer.Option(1000, help="evaluation batch size"),
    experiment: str | None = typer.Option(None, help="[default: the training run's experiment]"),
    force: bool = typer.Option(False, help="evaluate even a model that did not learn"),
):
    """Inject analog weight noise into a trained model and log the paper's eq. 7-9 statistics."""
    # the run, the model and the right to write: checked before the noise code (and TensorFlow) is imported
    target = tracking.evaluation_target(run_id or None, model_uri or None, experiment or None, force)
    from lrnoise.noise.evaluation import noise_eval as run_noise_eval

    config = noise_config(noise, levels, targets, fold_bn, noise_option, trials, ci_target, max_trials, seed)
    run_noise_eval(
        config,
        run_id=run_id or None,
        model_uri=model_uri or None,
        dataset=dataset or None,
        data_dir=data_dir or None,
        experiment=experiment or None,
        batch_size=batch_size,
        force=force,
        target=target,
    )


@app.command()
@one_line_errors
def report(
    experiment: str = typer.Option(names.DEFAULT_EXPERIMENT, help="MLflow experiment to report on"),
    out: str | None = typer.Option(None, help="output folder [default: reports/<experiment>]"),
    dataset: str | None = typer.Option(None, help="only this dataset"),
    model: str | None = typer.Option(None, help="only this model"),
    optimizer: str | None = typer.Option(None, help="only this optimizer (tables use adam by default)"),
    noise_config: str = typer.Option(
        "additive-paper",
        help="the noise configuration to report, by name or key (e.g. additive-paper, pcm-1s-1y), or 'all'",
    ),
    max_accuracy_drop: float = typer.Option(
        0.01, help="sweet spot: baseline within this fraction of the best (0.01 = 1 point)"
    ),
    pdf: bool = typer.Option(True, help="each figure also as pdf (for papers; --no-pdf: png only, faster)"),
    target_accuracy: float | None = typer.Option(
        None,
        min=0.0,
        max=1.0,
        help="the lr-tuning vs noise-injection frontier's clean-accuracy target, a fraction "
        "[default: the eta = 0 configuration's mean less --max-accuracy-drop]",
    ),
):
    """Tables II-III, Figures 1-8 (those the runs span), claims, the paper comparison and the sweet spots, from the
    tracking server."""
    with tracking.fail_fast_http():  # this command only
        tracking.find_experiment(experiment)  # a missing experiment or a refused user: before the heavy imports
        from lrnoise.report import assembly as report_module

        built = report_module.build_and_write(
            experiment,
            out=out or None,
            dataset=dataset or None,
            model=model or None,
            optimizer=optimizer or None,
            noise_config=noise_config,
            max_accuracy_drop=max_accuracy_drop,
            pdf=pdf,
            target_accuracy=target_accuracy,
        )
    print(report_module.summary_text(built))


@app.command()
@one_line_errors
def study(
    preset: str = typer.Option(
        "demo",
        help="demo (digits, minutes on a CPU) | seeds (digits, 5 seeds) | mechanism "
        "(digits: lr x batch size, noise-injection training) | paper | "
        "optimizers",
    ),
    datasets: str | None = typer.Option(None, help="override, e.g. cifar10,cifar100"),
    models: str | None = typer.Option(None, help="override, e.g. resnet20,resnet32"),
    optimizers: str | None = typer.Option(None, help="override, e.g. adam,sgd"),
    lrs: str | None = typer.Option(None, help="override, e.g. 0.0005,0.001"),
    batch_sizes: str | None = typer.Option(None, help="override, e.g. 16,32,64,128 (a swept axis)"),
    train_noises: str | None = typer.Option(
        None, help="noise-injection training etas, e.g. 0,0.02,0.05,0.1 (0 = clean training; a swept axis)"
    ),
    seeds: str | None = typer.Option(None, help="override, e.g. 0,1,2"),
    epochs: str | None = typer.Option(None, help="override the preset's maximum epochs"),  # str: '' = unset
    noise: str | None = typer.Option(None, help="noise configurations, e.g. additive,pcm [preset's]"),
    etas: str | None = typer.Option(None, help="override the eta levels of additive/multiplicative"),
    times: str | None = typer.Option(None, help="override the inference times (s) of pcm"),
    trials: str | None = typer.Option(None, help="override draws per level (or 'auto')"),
    patience: str | None = typer.Option(None, help="override early-stopping patience"),  # str: '' = unset
    budget: str | None = typer.Option(
        None, help="epochs | steps: equal optimizer steps for every batch size (lrnoise train --help) [preset's]"
    ),
    reference_batch_size: str | None = typer.Option(
        None, help="budget steps: the batch size whose epochs set the updates [preset's, else 32]"
    ),  # str: '' = unset
    batch_size: int | None = typer.Option(None, help="one batch size for every configuration (= --batch-sizes N)"),
    experiment: str = typer.Option(names.DEFAULT_EXPERIMENT, help="MLflow experiment"),
    workers: str | None = typer.Option(
        None,
        help="configurations at once (processes; each with its own GPUs when GPUs exist: --gpus-per-training) "
        "[default: one per GPU; on a CPU the preset's, 2 for demo, seeds and mechanism with >= 2 cores, else 1]",
    ),  # str: '' = unset
    executor: str = typer.Option("local", help="local | ray"),
    reuse: str = typer.Option(
        "same",
        help="which finished runs are reused: same (made under this lrnoise's training and noise semantics) | "
        "any (older ones too)",
    ),
    ray_address: str | None = typer.Option(None, help="Ray cluster address [default: a local instance]"),
    cpus_per_training: str | None = typer.Option(
        Placement.cpus_per_training,
        help="Ray: CPUs each training asks for [default: 1 beside a GPU; on CPU nodes the smallest node's CPUs / "
        "the preset's workers per node]",
    ),
    gpus_per_training: str | None = typer.Option(
        Placement.gpus_per_training,
        help="GPUs each training asks for (Ray) or sees (local workers): 0, a whole number, or 1/k to share one "
        "GPU k ways [default: 1 where there are GPUs, else 0]",
    ),  # str: '' = unset
    ray_runtime_env: str = typer.Option(
        Placement.ray_runtime_env,
        help='Ray runtime_env of the workers as a JSON object, e.g. \'{"py_modules": ["src/lrnoise"]}\' for '
        "nodes without lrnoise installed",
    ),
    data_dir: str | None = typer.Option(None, help="folder with the official CIFAR archives"),
    report: bool = typer.Option(True, help="build the report at the end"),
    report_dir: str | None = typer.Option(None, help="report folder [default: reports/<experiment>]"),
    lease_timeout: float = typer.Option(
        leases.DEFAULT_LEASE_TIMEOUT,
        help="seconds without a heartbeat after "
        "which another study's run is taken over (at once when its process on this "
        "host is gone)",
    ),
    mixed_precision: str = MIXED_PRECISION,
    jit_compile: bool | None = JIT_COMPILE,
    steps_per_execution: int = STEPS_PER_EXECUTION,
    grad_noise_batches: int = GRAD_NOISE_BATCHES,
    checkpoint_every: float = CHECKPOINT_EVERY,
):
    """Run the whole grid (resumable: finished runs are reused; safe beside other studies), then the report."""
    if not lease_timeout > 0:
        raise LrnoiseError(f"lease timeout must be > 0 seconds, got {lease_timeout}")
    execution = Execution(
        mixed_precision=mixed_precision,
        jit_compile=jit_compile,
        steps_per_execution=steps_per_execution,
        grad_noise_batches=grad_noise_batches,
        checkpoint_every=checkpoint_every,
    ).validate()
    spec = StudySpec(
        preset=preset,
        datasets=parse_list(datasets, str, "datasets"),
        models=parse_list(models, str, "models"),
        optimizers=parse_list(optimizers, str, "optimizers"),
        lrs=parse_list(lrs, float, "lrs"),
        batch_sizes=parse_list(batch_sizes, int, "batch-sizes"),
        train_noises=parse_list(train_noises, float, "train-noises"),
        seeds=parse_list(seeds, int, "seeds"),
        epochs=parse_count(epochs, "epochs"),
        noise=parse_list(noise, str, "noise"),
        etas=parse_list(etas, float, "etas"),
        times=parse_list(times, float, "times"),
        trials=parse_trials(trials),
        patience=parse_count(patience, "patience"),
        budget=budget or None,
        reference_batch_size=parse_count(reference_batch_size, "reference-batch-size"),
        batch_size=batch_size,
    ).validate()  # the grid's names and values, before TensorFlow is imported
    check_choice("executor", executor, EXECUTORS)
    check_choice("reuse", reuse, REUSE)
    placement = Placement(
        parse_amount(cpus_per_training, "cpus-per-training"),
        parse_amount(gpus_per_training, "gpus-per-training"),
        ray_runtime_env,
    ).validate()
    count = parse_count(workers, "workers")
    if count is not None and count < 1:
        raise LrnoiseError(f"workers must be >= 1, got {count}")
    loading.require(sorted({c.dataset for c in spec.train_configs()}), data_dir or None)  # before any run exists
    if not (executor == "ray" and ray_address):  # (a Ray cluster's study checks its server first)
        tracking.writable_experiment(experiment)  # before TensorFlow is imported
    from lrnoise.study import runner as study_module

    outcomes, _ = study_module.run_study(
        spec,
        experiment=experiment,
        workers=count,
        executor=executor,
        ray_address=ray_address or None,
        data_dir=data_dir or None,
        report=report,
        report_dir=report_dir or None,
        execution=execution,
        lease_timeout=lease_timeout,
        reuse=reuse,
        placement=placement,
    )
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
