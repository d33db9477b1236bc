"""What the README, docs/, MLproject and the notebook say is checked: every `lrnoise ...` command line parses
against the CLI (MLproject's with its defaults filled in, as `mlflow run` fills them), and every
`lrnoise.module.name` they mention, and every name the notebook's code takes from an lrnoise module, exists."""

import ast
import importlib
import json
import re
import shlex

import pytest
import typer.main

from lrnoise import cli

from support import ROOT

PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")), ROOT / "benchmarks" / "README.md"]
NOTEBOOK = ROOT / "notebooks" / "analysis.ipynb"


def notebook_cells(kind: str) -> list[str]:
    """The sources of the notebook's `kind` cells (markdown or code)."""
    import nbformat

    return [c.source for c in nbformat.read(NOTEBOOK, as_version=4).cells if c.cell_type == kind]


def texts() -> list[tuple[str, str]]:
    """(page name, text) of every page a reader reads: the docs, and the notebook's markdown and code."""
    found = [(page.name, page.read_text()) for page in PAGES if page.exists()]
    cells = "\n".join(notebook_cells("markdown")) + "\n```\n" + "\n".join(notebook_cells("code")) + "\n```\n"
    return [*found, (NOTEBOOK.name, cells)]


UsageError = next(c for c in typer.BadParameter.__mro__ if c.__name__ == "UsageError")  # Typer carries its own click
ENV_ASSIGNMENT = re.compile(r"^[A-Z_][A-Z0-9_]*=\S*$")


def command_lines(text: str) -> list[str]:
    """Every `lrnoise <command> ...` in fenced code blocks (continuation lines joined) and in inline code."""
    found, fenced = [], False
    for line in re.sub(r"\\[ \t]*\r?\n\s*", " ", text).splitlines():
        if line.strip().startswith("```"):
            fenced = not fenced
            continue
        candidates = [line.split("#")[0]] if fenced else re.findall(r"`([^`]+)`", line)
        for candidate in candidates:
            words = re.sub(r"^\$\s+", "", candidate.strip()).split()  # a shell prompt
            while words and ENV_ASSIGNMENT.match(words[0]):  # KERAS_BACKEND=jax lrnoise ...
                words.pop(0)
            if len(words) >= 2 and words[0] == "lrnoise" and not words[1].startswith("-"):
                found.append(" ".join(words))
    return found


def parse(line: str) -> None:
    """Parses `line` as the CLI would (no command runs): an unknown command or option raises UsageError."""
    group = typer.main.get_command(cli.app)
    name, *args = shlex.split(line)[1:]
    if name not in group.commands:
        raise UsageError(f"no command {name!r}")
    group.commands[name].make_context(name, args)


COMMANDS = sorted({(name, line) for name, text in texts() for line in command_lines(text)})


def test_the_pages_show_commands():
    assert len(COMMANDS) >= 10 and any(page == "README.md" for page, _ in COMMANDS)


@pytest.mark.parametrize("page, line", COMMANDS)
def test_every_documented_command_parses(page, line):
    parse(line)


def test_an_unknown_option_or_command_fails_the_check():
    with pytest.raises(UsageError):
        parse("lrnoise train --learning-rate 0.1")
    with pytest.raises(UsageError):
        parse("lrnoise fit --lr 0.1")
    assert command_lines("```bash\nKERAS_BACKEND=jax lrnoise train \\\n  --lr 0.1\n```\nsee `lrnoise report`") == [
        "lrnoise train --lr 0.1",
        "lrnoise report",
    ]


NAMES = sorted(
    {
        (name, m.group(0))
        for name, text in texts()
        for m in re.finditer(r"\blrnoise(?:\.[A-Za-z_][A-Za-z0-9_]*){2,}", text)  # lrnoise.report.assembly.build
    }
)


def resolves(dotted: str) -> bool:
    """Whether `dotted` (lrnoise.report.assembly, lrnoise.report.assembly.build, lrnoise.grid.CELL) names a module
    or an attribute of one: its longest importable module prefix, then attributes."""
    parts = dotted.split(".")
    for end in range(len(parts), 0, -1):
        try:
            found = importlib.import_module(".".join(parts[:end]))
        except ModuleNotFoundError:
            continue
        for attribute in parts[end:]:
            if not hasattr(found, attribute):
                return False
            found = getattr(found, attribute)
        return True
    return False


@pytest.mark.parametrize("page, name", NAMES)
def test_every_documented_name_exists(page, name):
    assert resolves(name), f"{page}: {name}"


def test_the_benchmark_table_is_the_one_generated_from_results_json():
    import json
    import sys

    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        import table
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))
    results = json.loads((ROOT / "benchmarks" / "results.json").read_text())
    readme = (ROOT / "benchmarks" / "README.md").read_text()
    assert readme == table.generated(readme, results), "run python benchmarks/table.py"
    assert "study_fixed_seconds_per_configuration" in readme


def test_conda_yaml_installs_what_pyproject_declares():
    """`mlflow run .` builds its environment from conda.yaml: the same Python range and the same pinned packages
    as pyproject.toml, and the project itself."""
    import yaml

    tomllib = pytest.importorskip("tomllib")  # Python >= 3.11

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    conda = yaml.safe_load((ROOT / "conda.yaml").read_text())["dependencies"]
    python = next(d for d in conda if isinstance(d, str) and d.startswith("python"))
    assert python == "python" + project["requires-python"]
    pip = next(d["pip"] for d in conda if isinstance(d, dict))
    assert pip == [*project["dependencies"], "-e ."]


def mlproject_commands() -> list[tuple[str, str]]:
    """(entry point, its command with every parameter's default filled in, quoted as `mlflow run` quotes it)."""
    import yaml

    entry_points = yaml.safe_load((ROOT / "MLproject").read_text())["entry_points"]
    return [
        (name, entry["command"].format(**{k: shlex.quote(str(p["default"])) for k, p in entry["parameters"].items()}))
        for name, entry in entry_points.items()
        if "parameters" in entry
    ] + [(name, entry["command"]) for name, entry in entry_points.items() if "parameters" not in entry]


@pytest.mark.parametrize("entry, line", mlproject_commands())
def test_every_mlproject_command_parses_with_its_defaults(entry, line):
    assert line.startswith(f"lrnoise {entry.replace('_', '-')}") or entry == "main"
    parse(line)


def notebook_names() -> list[str]:
    """The full dotted name of each name the notebook's code imports from lrnoise (`from lrnoise.report import
    assembly`: lrnoise.report.assembly) and of each attribute it takes from one (lrnoise.report.assembly.build)."""
    code = "\n".join(line for cell in notebook_cells("code") for line in cell.splitlines() if not line.startswith("%"))
    tree = ast.parse(code)
    imported = {
        alias.asname or alias.name: f"{node.module}.{alias.name}"
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "lrnoise"
        for alias in node.names
    }
    return sorted(
        set(imported.values())
        | {
            f"{imported[node.value.id]}.{node.attr}"
            for node in ast.walk(tree)
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in imported
        }
    )


def test_every_name_the_notebook_takes_from_lrnoise_exists():
    names = notebook_names()
    assert "lrnoise.report.assembly.build" in names and "lrnoise.data.loading.load" in names  # the finder reads it
    for name in names:
        assert resolves(name), f"{NOTEBOOK.name}: {name}"


def test_the_tracking_page_names_every_param_metric_and_tag_the_code_defines():
    """docs/tracking.md against the code: every configuration field that is a param, every name in lrnoise.names."""
    from dataclasses import fields

    from lrnoise import names
    from lrnoise.config import Execution, TrainConfig
    from lrnoise.noise.noise_config import NoiseConfig

    from support.docs import undocumented

    params = [f.name for cls in (TrainConfig, Execution) for f in fields(cls)] + list(names.STUDY_PARAMS)
    params += [names.NOISE_PARAM_PREFIX + f.name for f in fields(NoiseConfig)]
    constants = [
        value
        for key, value in vars(names).items()
        if key.isupper() and isinstance(value, str) and key not in NOT_STORE_NAMES
    ]
    metrics = [*names.EPOCH_METRICS, *names.STUDY_METRICS, *names.GRAD_NOISE_METRICS.values()]
    assert undocumented([*params, *constants, *metrics]) == []


# names.py's strings that are no param, metric or tag of a run
NOT_STORE_NAMES = {"DEFAULT_EXPERIMENT", "PAPER_NOISE_CONFIG", "NORMALIZATION_LAYER", "NOISE_PARAM_PREFIX"}
NOT_STORE_NAMES |= {"FINAL_SUFFIX", "MEAN_SUFFIX", "TRAIN_SPLIT", "TEST_SPLIT", "DATASET_PARAM"}


def test_the_committed_notebook_is_rendered_without_any_machines_path():
    """notebooks/analysis.ipynb is committed with its outputs (the demo's story, read from its store), and no
    output names a folder of the machine that rendered it."""
    cells = json.loads(NOTEBOOK.read_text())["cells"]
    outputs = json.dumps([cell.get("outputs", []) for cell in cells if cell["cell_type"] == "code"])
    assert "image/png" in outputs and "primary" in outputs  # rendered: figures and the verdicts in words
    assert not [p for p in ("/tmp/", "/work/", "/home/", "/root/", "/Users/", "sqlite:///") if p in outputs]
