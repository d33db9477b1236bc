"""The CLI's parsing of lists, trials and noise options (the one place text becomes values)."""

import sys

import pytest

from lrnoise import cli
from lrnoise.errors import LrnoiseError


@pytest.mark.parametrize(
    "text, cast, expected",
    [
        ("0.1, 0.2", float, (0.1, 0.2)),
        ("", float, None),
        (None, int, None),
        ("1,2,", int, (1, 2)),
        ("a,b", str, ("a", "b")),
    ],
)
def test_parse_list(text, cast, expected):
    assert cli.parse_list(text, cast, "x") == expected


@pytest.mark.parametrize("text", ["0.1,fast", " , "])
def test_parse_list_refuses(text):
    with pytest.raises(LrnoiseError, match="--x"):
        cli.parse_list(text, float, "x")


@pytest.mark.parametrize("text, expected", [("auto", "auto"), (" 7 ", 7), ("", None), ("many", "many")])
def test_parse_trials(text, expected):
    assert cli.parse_trials(text) == expected


def test_parse_options():
    assert cli.parse_options("g_max=10, drift_compensation=FALSE") == (("drift_compensation", False), ("g_max", 10.0))
    assert cli.parse_options(None) == ()
    for bad in ("g_max", "g_max=lots"):
        with pytest.raises(LrnoiseError, match="noise-option"):
            cli.parse_options(bad)


def test_noise_config_from_the_options():
    config = cli.noise_config("pcm", "1,3600", None, True, "read_noise_scale=2", "auto", 0.01, 20, 3)
    assert config.levels == (1.0, 3600.0) and config.targets == "kernels" and config.fold_bn
    assert dict(config.options)["read_noise_scale"] == 2.0 and config.trials == "auto" and config.seed == 3
    with pytest.raises(LrnoiseError, match="trials must be"):
        cli.noise_config("additive", None, None, False, None, "many", 0.01, 20, 0)


# ---------------------------------------------------------------- one source for defaults
def cli_defaults(command: str) -> dict:
    """{option name: default} of an `lrnoise` command, as Typer hands them to the function."""
    import typer.main

    return {p.name: p.default for p in typer.main.get_command(cli.app).commands[command].params}


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
    import inspect

    from lrnoise.noise import injection
    from lrnoise.report import assembly

    defaults = cli_defaults("noise-eval")
    for name in ("noise", "ci_target", "max_trials", "seed"):
        assert same(defaults[name], getattr(injection.NoiseConfig, name)), f"lrnoise noise-eval --{name}"
    assert same(defaults["trials"], injection.DEFAULT_TRIALS)
    signature = inspect.signature(assembly.build_and_write).parameters
    for name, value in cli_defaults("report").items():
        if name in signature and name not in ("out", "dataset", "model", "optimizer"):
            assert same(value, signature[name].default), f"lrnoise report --{name}"


def test_mlproject_entry_points_have_the_clis_defaults():
    import yaml

    from conftest import ROOT

    entry_points = yaml.safe_load((ROOT / "MLproject").read_text())["entry_points"]
    checked = 0
    for entry, spec in entry_points.items():
        if entry == "main":
            continue
        defaults = cli_defaults(entry.replace("_", "-"))
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

    from conftest import ROOT

    entry_points = yaml.safe_load((ROOT / "MLproject").read_text())["entry_points"]
    commands = typer.main.get_command(cli.app).commands
    for entry, spec in entry_points.items():
        if entry == "main":
            continue
        options = {p.name for p in commands[entry.replace("_", "-")].params}
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
