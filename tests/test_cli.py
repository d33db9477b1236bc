"""The CLI: its options are the configuration dataclasses' fields (cli_options.py: the one place text becomes
values), MLproject carries them with the same defaults, and Typer's own usage errors are one line."""

import sys

import pytest

from lrnoise import cli
from lrnoise.cli_options import build, leaves
from lrnoise.config import Execution, TrainConfig
from lrnoise.errors import LrnoiseError
from lrnoise.grid import StudySpec
from lrnoise.noise.noise_config import NoiseConfig
from lrnoise.settings import ReportSettings, StudySettings


@pytest.mark.parametrize(
    "text, expected",
    [
        ("0.1, 0.2", (0.1, 0.2)),  # a list, cast by the field's annotation (tuple[float, ...] | None)
        ("", None),  # '' = unset, as MLproject passes it
        (None, None),
        ("1,2,", (1.0, 2.0)),
    ],
)
def test_a_list_option_is_cast_by_its_fields_annotation(text, expected):
    assert build(StudySpec, {"lrs": text}).lrs == expected


@pytest.mark.parametrize(
    "values, message",
    [
        ({"lrs": "0.1,fast"}, "--lrs must be a comma-separated list, got '0.1,fast'"),
        ({"lrs": " , "}, "--lrs is empty"),
        ({"epochs": "ten"}, "--epochs must be a whole number, got 'ten'"),
        ({"seeds": "0,1.5"}, "--seeds must be a comma-separated list"),
    ],
)
def test_a_value_that_does_not_fit_its_field_is_one_line_naming_the_option(values, message):
    with pytest.raises(LrnoiseError, match=message):
        build(StudySpec, values)


@pytest.mark.parametrize("text, expected", [("auto", "auto"), (" 7 ", 7), ("", None), ("many", "many")])
def test_trials_are_a_whole_number_or_text_for_the_noise_config_to_judge(text, expected):
    assert build(StudySpec, {"trials": text}).trials == expected


def test_nested_settings_are_built_from_their_own_fields():
    settings = build(StudySettings, {"workers": "3", "mixed_precision": "bf16", "gpus_per_training": "0.5"})
    assert settings.workers == 3 and settings.execution.mixed_precision == "bf16"
    assert settings.placement.gpus_per_training == 0.5 and settings.execution.steps_per_execution == 1


def test_parse_options():
    assert cli.parse_options("g_max=10, drift_compensation=FALSE") == (("drift_compensation", False), ("g_max", 10.0))
    assert cli.parse_options(None) == ()
    for bad in ("g_max", "g_max=lots"):
        with pytest.raises(LrnoiseError, match="noise-option"):
            cli.parse_options(bad)


def test_noise_config_from_the_options():
    values = {"noise": "pcm", "levels": "1,3600", "targets": "", "fold_bn": True, "options": "read_noise_scale=2"}
    values |= {"trials": "auto", "ci_target": 0.01, "max_trials": 20, "seed": 3}
    config = build(NoiseConfig, values, parsers={"options": cli.parse_options})
    assert config.levels == (1.0, 3600.0) and config.targets == "kernels" and config.fold_bn
    assert dict(config.options)["read_noise_scale"] == 2.0 and config.trials == "auto" and config.seed == 3
    with pytest.raises(LrnoiseError, match="trials must be"):
        build(NoiseConfig, {"noise": "additive", "trials": "many"}).validate()


@pytest.mark.parametrize(
    "command, classes, extra",
    [
        ("train", (TrainConfig, Execution), {"data_dir", "experiment", "registered_model", "resume"}),
        (
            "noise-eval",
            (NoiseConfig,),
            {"run_id", "model_uri", "dataset", "data_dir", "batch_size", "experiment", "force"},
        ),
        ("report", (ReportSettings,), set()),
        ("study", (StudySpec, StudySettings), set()),
    ],
)
def test_each_commands_options_are_its_dataclasses_fields(command, classes, extra):
    """No option list is written by hand: a field added to a dataclass is an option of its command."""
    fields = {f.name for cls in classes for f in leaves(cls)}
    assert set(cli_defaults(command)) == fields | extra


# ---------------------------------------------------------------- one source for defaults
def cli_defaults(command: str) -> dict:
    """{option name: default} of an `lrnoise` command, as Typer hands them to the function."""
    import typer.main

    return {p.name: p.default for p in typer.main.get_command(cli.app).commands[command].params}


def flag_defaults(command: str) -> dict:
    """{option name as its flag spells it (--noise-option: noise_option): default}, as MLproject names them."""
    import typer.main

    params = typer.main.get_command(cli.app).commands[command].params
    return {p.opts[0].lstrip("-").replace("-", "_"): p.default for p in params}


def same(a, b) -> bool:
    """One default written two ways ("100" in MLproject, 100 in Python; "" and None both mean unset)."""
    if a in ("", None) or b in ("", None):
        return a in ("", None) and b in ("", None)
    try:
        return float(a) == float(b)
    except (TypeError, ValueError):
        return str(a) == str(b)


def test_the_cli_trains_with_the_configuration_objects_defaults():
    from dataclasses import fields

    from lrnoise.config import Execution, TrainConfig

    defaults = cli_defaults("train")
    for config in (TrainConfig, Execution):
        for f in fields(config):
            if f.name in defaults:
                assert defaults[f.name] == f.default, f"lrnoise train --{f.name}"
    assert {f.name for f in fields(Execution)} <= set(defaults)


def test_noise_eval_and_report_defaults_are_their_objects_defaults():
    from dataclasses import fields

    defaults = cli_defaults("noise-eval")
    for name in ("noise", "ci_target", "max_trials", "seed", "trials"):
        assert same(defaults[name], getattr(NoiseConfig, name)), f"lrnoise noise-eval --{name}"
    report = cli_defaults("report")
    for f in fields(ReportSettings):
        assert same(report[f.name], f.default), f"lrnoise report --{f.name}"


def test_mlproject_entry_points_have_the_clis_defaults():
    import yaml

    from support import ROOT

    entry_points = yaml.safe_load((ROOT / "MLproject").read_text())["entry_points"]
    checked = 0
    for entry, spec in entry_points.items():
        if entry == "main":
            continue
        defaults = flag_defaults(entry.replace("_", "-"))
        for name, param in spec["parameters"].items():
            assert name in defaults, f"MLproject {entry}.{name} is no option of lrnoise {entry}"
            if name == "preset" or str(param.get("default", "")) != "":  # "" = not given: the CLI's own default
                assert same(param["default"], defaults[name]), f"MLproject {entry}.{name}"
                checked += 1
    assert checked >= 15  # the test reads the file it means to


# What an entry point leaves to `mlflow run` itself or to a person at a terminal, and why
NOT_IN_MLPROJECT = {
    "experiment",  # `mlflow run --experiment-name` chooses it (a report names what it reports on: it has one)
    "resume",  # continuing one interrupted run by id: `lrnoise train --resume`
    "force",  # evaluating a model that did not learn: a deliberate one-off
    "jit_compile",  # a three-way switch (on, off, Keras decides): a flag pair, no value to pass
    "fold_bn",  # a flag pair
    "pdf",  # a flag pair
    "report",  # a flag pair (a study without its report)
    "batch_size",  # study: the same as batch_sizes, which the entry point has
    "target_accuracy",  # unset means derived; MLproject parameters cannot be unset
}


def test_mlproject_entry_points_have_every_option_of_their_command():
    import typer.main
    import yaml

    from support import ROOT

    entry_points = yaml.safe_load((ROOT / "MLproject").read_text())["entry_points"]
    commands = typer.main.get_command(cli.app).commands
    for entry, spec in entry_points.items():
        if entry == "main":
            continue
        options = {p.opts[0].lstrip("-").replace("-", "_") for p in commands[entry.replace("_", "-")].params}
        missing = options - set(spec["parameters"]) - NOT_IN_MLPROJECT
        assert not missing, f"MLproject {entry} lacks {sorted(missing)}"


def test_study_runs_with_the_execution_objects_defaults():
    """`lrnoise study` carries every Execution option, with its default, to each training of the grid."""
    from dataclasses import fields

    from lrnoise.config import Execution

    defaults = cli_defaults("study")
    for f in fields(Execution):
        assert defaults[f.name] == f.default, f"lrnoise study --{f.name}"


@pytest.mark.parametrize(
    "argv, expected",
    [
        (["train", "--lr", "abc"], "error: Invalid value for '--lr': "),
        (["train", "--nope"], "error: No such option: --nope"),
        (["report", "--max-accuracy-drop", "x"], "error: Invalid value for '--max-accuracy-drop': "),
        (["nosuchcommand"], "error: No such command 'nosuchcommand'."),
    ],
)
def test_typers_own_usage_errors_are_one_line_with_status_2(monkeypatch, capsys, argv, expected):
    monkeypatch.setattr(sys, "argv", ["lrnoise", *argv])
    with pytest.raises(SystemExit) as stopped:
        cli.main()
    err = capsys.readouterr().err
    assert stopped.value.code == 2 and len(err.strip().splitlines()) == 1 and err.startswith(expected), err
    assert err.rstrip().endswith("--help)")  # where to look for what is allowed


@pytest.mark.parametrize(
    "command, classes",
    [("train", (TrainConfig, Execution)), ("noise-eval", (NoiseConfig,)), ("report", (ReportSettings,))]
    + [("study", (StudySpec, StudySettings))],
)
def test_every_commands_help_lists_each_options_allowed_values(command, classes):
    import typer.main

    params = {p.name: p for p in typer.main.get_command(cli.app).commands[command].params}
    with_choices = [f for cls in classes for f in leaves(cls) if f.metadata.get("choices")]
    assert with_choices  # the check reads real fields
    for f in with_choices:
        assert " | ".join(map(str, f.metadata["choices"])) in params[f.name].help, f"lrnoise {command} --{f.name}"


@pytest.mark.slow
def test_python_dash_m_lrnoise_is_the_command():
    import subprocess

    proc = subprocess.run([sys.executable, "-m", "lrnoise", "--help"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and "noise-eval" in proc.stdout and "study" in proc.stdout, proc.stderr
