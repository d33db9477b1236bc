"""The package's shape, read from the source: packages by layer, each saying in its `__init__` docstring what it
may import; imports run one way (function-local imports included); no module over ~400 lines; every module name
once; the configuration imports nothing heavy; the noise math and statistics import without MLflow; and
docs/architecture.md's package map is the one the docstrings give (`python tests/test_architecture.py` writes it).
"""

import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "src" / "lrnoise"
ARCHITECTURE = ROOT / "docs" / "architecture.md"
BASE = "base"  # the top-level modules every layer may import (errors, paper, config, grid, settings, names)
COMMAND_LINE = {"cli", "cli_options", "__main__"}  # the top: may import every layer
MAX_LINES = 400
MAP_START = "<!-- package map: written by `python tests/test_architecture.py` from the packages' docstrings -->"
MAP_END = "<!-- end of package map -->"


def module_name(path: Path) -> str:
    """src/lrnoise/noise/physics.py -> 'noise.physics'; src/lrnoise/config.py -> 'config'."""
    parts = path.relative_to(PACKAGE).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts) or "__init__"


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def layer_of(module: str) -> str:
    """'noise.physics' -> 'noise'; top-level modules are the base, but the command line."""
    if "." in module or (PACKAGE / module).is_dir():
        return module.split(".")[0]
    return "cli" if module in COMMAND_LINE else BASE


def imports_of(path: Path) -> set[str]:
    """The lrnoise modules `path` imports anywhere in it (top level, functions, TYPE_CHECKING blocks)."""
    known = modules()
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "lrnoise":
            base = node.module.removeprefix("lrnoise").lstrip(".")
            for alias in node.names:
                candidate = f"{base}.{alias.name}" if base else alias.name
                found.add(candidate if candidate in known else base or "__init__")
        elif isinstance(node, ast.Import):
            found |= {a.name.removeprefix("lrnoise.") for a in node.names if a.name.startswith("lrnoise.")}
    return found - {module_name(path)}


def import_graph() -> dict[str, set[str]]:
    return {name: imports_of(path) for name, path in modules().items()}


def allowed_layers() -> dict[str, set[str]]:
    """Each package's declared imports: the 'May import:' line of its __init__ docstring."""
    declared = {}
    for init in sorted(PACKAGE.glob("*/__init__.py")):
        doc = ast.get_docstring(ast.parse(init.read_text())) or ""
        line = re.search(r"^May import: (.+?)\.?$", doc, re.M)
        assert line, f"{init.relative_to(ROOT)}: its docstring has no 'May import: ...' line"
        declared[init.parent.name] = {p.strip() for p in line.group(1).split(",")} - {"the base modules"}
    return declared


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every node that reaches itself, with the path that closes the circle."""
    found = []
    for start in sorted(graph):
        stack, seen = [(start, [start])], set()
        while stack:
            node, path = stack.pop()
            for nxt in sorted(graph.get(node, ())):
                if nxt == start:
                    found.append(path + [start])
                    stack.clear()
                    break
                if nxt not in seen:
                    seen.add(nxt)
                    stack.append((nxt, path + [nxt]))
    return found


def wrong_way(graph: dict[str, set[str]], declared: dict[str, set[str]]) -> list[str]:
    """Every import of a layer its importer's docstring does not allow."""
    found = []
    for module, targets in sorted(graph.items()):
        layer = layer_of(module)
        for target in sorted(targets):
            other = layer_of(target)
            if other in (layer, BASE) or layer == "cli":
                continue
            if layer == BASE or other == "cli" or other not in declared.get(layer, set()):
                found.append(f"{module} imports {target}")
    return found


def test_the_checks_see_a_circle_and_a_wrong_way_import():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}})[0] == ["a", "b", "c", "a"]
    assert cycles({"a": {"b"}, "b": set()}) == []
    declared = {"noise": {"data"}, "training": {"noise", "data"}}
    graph = {"training.train": {"noise.physics", "config"}, "noise.physics": {"training.networks"}}
    assert wrong_way(graph, declared) == ["noise.physics imports training.networks"]


def test_imports_run_one_way():
    graph, declared = import_graph(), allowed_layers()
    assert "training.build" in graph["training.train"] and "noise.physics" in graph["noise.noise_config"]
    assert wrong_way(graph, declared) == []
    assert cycles(graph) == []
    assert cycles(declared) == [], "the layers' declared imports must not form a circle"


def test_every_package_says_its_job_and_every_module_is_small_and_named_once():
    declared = allowed_layers()
    assert set(declared) == {"data", "store", "noise", "training", "analysis", "report", "study"}
    too_long = {m: n for m, p in modules().items() if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert not too_long, f"modules over {MAX_LINES} lines: {too_long}"
    stems = [p.stem for p in PACKAGE.rglob("*.py") if p.stem != "__init__"]
    assert sorted(s for s in set(stems) if stems.count(s) > 1) == []
    assert not {p.parent.name for p in PACKAGE.rglob("*.py")} & set(stems), "a module named as a package"


def reachable(graph: dict[str, set[str]], module: str) -> set[str]:
    """`module` and every lrnoise module it imports, directly or through others."""
    seen, stack = {module}, [module]
    while stack:
        for nxt in graph.get(stack.pop(), set()) - seen:
            seen.add(nxt)
            stack.append(nxt)
    return seen


def packages_imported(path: Path) -> set[str]:
    """The top-level packages `path` imports anywhere in it (numpy, keras, mlflow, ...; lrnoise too)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found.add(node.module.split(".")[0])
        elif isinstance(node, ast.Import):
            found |= {a.name.split(".")[0] for a in node.names}
    return found


def heavy_reached(module: str) -> set[str]:
    graph, paths = import_graph(), modules()
    return {p for m in reachable(graph, module) for p in packages_imported(paths[m])}


@pytest.mark.parametrize(
    "module, heavy",
    [
        ("config", {"keras", "tensorflow", "mlflow", "pandas"}),  # the CLI validates before any heavy import
        ("settings", {"keras", "tensorflow", "mlflow", "pandas"}),
        ("noise.noise_config", {"tensorflow", "mlflow", "pandas"}),  # keras only on a model's first draw
        ("noise.physics", {"mlflow"}),  # the noise math, usable without a tracking store
        ("noise.injection", {"mlflow"}),
        ("analysis.verdicts", {"mlflow", "keras"}),  # the statistics, usable on any frame
        ("report.figures", {"mlflow", "keras"}),
        ("training.gradnoise", {"mlflow"}),
        ("noise.evaluation", {"matplotlib"}),  # a worker's evaluation never loads the figures
    ],
)
def test_light_modules_import_nothing_heavy(module, heavy):
    """Read from the source, function-level imports included: what `module` and everything it reaches import."""
    imported = heavy_reached(module)
    assert "lrnoise" in imported  # it reads real imports
    assert not heavy & imported, f"{module} reaches {sorted(heavy & imported)}"


def test_the_light_module_check_sees_a_heavy_import():
    assert "mlflow" in heavy_reached("report.assembly") and "keras" in heavy_reached("training.train")


@pytest.mark.slow
def test_a_refused_study_never_imports_tensorflow():
    code = (
        "import sys; from typer.testing import CliRunner; from lrnoise.cli import app; "
        "result = CliRunner().invoke(app, ['study', '--models', 'resnet18']); "
        "print(result.exit_code, 'tensorflow' in sys.modules, 'keras' in sys.modules); print(result.output)"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.stdout.splitlines()[0] == "2 False False", proc.stdout + proc.stderr[-2000:]
    assert "unknown model 'resnet18'" in proc.stdout


def package_map() -> str:
    """The package map: each layer in import order with its job (the docstring's first paragraph) and what it
    may import, then the base and command-line modules with their first docstring line."""
    declared = allowed_layers()
    order = []
    while len(order) < len(declared):  # a layer after everything it may import
        order += sorted(p for p, deps in declared.items() if p not in order and deps <= set(order))
    lines = [MAP_START, "", "| layer | its job | may import |", "|---|---|---|"]
    for name in ["base", *order, "cli"]:
        if name == "base":
            doc = "the configuration and the names every layer shares: " + ", ".join(
                f"`{m}`" for m in sorted(modules()) if layer_of(m) == BASE and m != "__init__"
            )
            lines.append(f"| base modules | {doc} | nothing of lrnoise's layers |")
            continue
        if name == "cli":
            lines.append(
                "| `cli.py`, `cli_options.py` | the `lrnoise` command line, its options derived from the "
                "configuration dataclasses | every layer |"
            )
            continue
        doc = ast.get_docstring(ast.parse((PACKAGE / name / "__init__.py").read_text())).split("\n\n")[0]
        lines.append(
            f"| `{name}/` | {' '.join(doc.split())} | {', '.join(sorted(declared[name])) or 'the base only'} |"
        )
    lines += ["", "| module | its job |", "|---|---|"]
    for name, path in modules().items():
        if name == "__init__" or path.name == "__init__.py":
            continue
        first = (ast.get_docstring(ast.parse(path.read_text())) or "").split("\n\n")[0]
        lines.append(f"| `{path.relative_to(PACKAGE)}` | {' '.join(first.split())} |")
    return "\n".join([*lines, "", MAP_END])


def test_the_architecture_page_shows_the_package_map_the_code_has():
    text = ARCHITECTURE.read_text()
    assert text.count("```") % 2 == 0, "an unclosed code fence"
    assert package_map() in text, "docs/architecture.md is stale: run `python tests/test_architecture.py`"


if __name__ == "__main__":  # rewrite the package map in docs/architecture.md
    text = ARCHITECTURE.read_text()
    start, end = text.find(MAP_START), text.find(MAP_END)
    fresh = package_map()
    text = text[:start] + fresh + text[end + len(MAP_END) :] if start >= 0 else text + "\n" + fresh + "\n"
    ARCHITECTURE.write_text(text)
    print(f"wrote the package map into {ARCHITECTURE.relative_to(ROOT)}")
