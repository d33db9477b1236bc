"""The CLI's parsing of lists, trials and noise options (the one place text becomes values)."""
import pytest

from lrnoise import cli
from lrnoise.errors import LrnoiseError


@pytest.mark.parametrize("text, cast, expected", [
    ("0.1, 0.2", float, (0.1, 0.2)), ("", float, None), (None, int, None), ("1,2,", int, (1, 2)),
    ("a,b", str, ("a", "b")),
])
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
    assert cli.parse_options("g_max=10, drift_compensation=FALSE") == (("drift_compensation", False),
                                                                      ("g_max", 10.0))
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
