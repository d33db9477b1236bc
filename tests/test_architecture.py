"""The package's shape: imports run one way (no module imports, even inside a function, a module that imports it),
the configuration imports nothing heavy, and the noise math and statistics import without MLflow."""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "lrnoise"


def imports_of(path: Path) -> set[str]:
    """The lrnoise modules `path` imports anywhere in it (top level, functions, TYPE_CHECKING blocks)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "lrnoise":
            found |= {a.name for a in node.names} if node.module == "lrnoise" else {node.module.split(".")[1]}
        elif isinstance(node, ast.Import):
            found |= {a.name.split(".")[1] for a in node.names if a.name.startswith("lrnoise.")}
    return found - {path.stem}


def import_graph() -> dict[str, set[str]]:
    modules = {p.stem for p in PACKAGE.glob("*.py")}
    return {p.stem: imports_of(p) & modules for p in PACKAGE.glob("*.py")}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every module that reaches itself, with the path that closes the circle."""
    found = []
    for start in sorted(graph):
        stack = [(start, [start])]
        seen = set()
        while stack:
            node, path = stack.pop()
            for nxt in sorted(graph[node]):
                if nxt == start:
                    found.append(path + [start])
                    stack.clear()
                    break
                if nxt not in seen:
                    seen.add(nxt)
                    stack.append((nxt, path + [nxt]))
    return found


def test_the_cycle_finder_finds_a_circle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}})[0] == ["a", "b", "c", "a"]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_imports_run_one_way():
    graph = import_graph()
    assert len(graph) > 15 and graph["train"] >= {"build", "tracking"}  # the graph is the package's
    assert cycles(graph) == []


def packages_imported(path: Path) -> set[str]:
    """The top-level packages `path` imports anywhere in it (numpy, keras, mlflow, ...; lrnoise too)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found.add(node.module.split(".")[0])
        elif isinstance(node, ast.Import):
            found |= {a.name.split(".")[0] for a in node.names}
    return found


def reachable(graph: dict[str, set[str]], module: str) -> set[str]:
    """`module` and every lrnoise module it imports, directly or through others."""
    seen, stack = {module}, [module]
    while stack:
        for nxt in graph[stack.pop()] - seen:
            seen.add(nxt)
            stack.append(nxt)
    return seen


@pytest.mark.parametrize(
    "module, heavy",
    [
        ("config", {"keras", "tensorflow", "mlflow", "pandas"}),  # the CLI validates before any heavy import
        ("noise_models", {"mlflow"}),  # the noise math, usable without a tracking store
        ("noise", {"mlflow"}),
        ("stats", {"mlflow", "keras"}),  # the statistics, usable on any frame
        ("figures", {"mlflow", "keras"}),
        ("gradnoise", {"mlflow"}),
    ],
)
def test_light_modules_import_nothing_heavy(module, heavy):
    """Read from the source, function-level imports included: what `module` and everything it reaches import."""
    graph = import_graph()
    imported = {p for m in reachable(graph, module) for p in packages_imported(PACKAGE / f"{m}.py")}
    assert "numpy" in imported or module == "config"  # it reads real imports
    assert not heavy & imported, f"{module} reaches {sorted(heavy & imported)}"


def test_the_light_module_check_sees_a_heavy_import():
    assert {"mlflow", "lrnoise"} <= packages_imported(PACKAGE / "tracking.py")
    assert "mlflow" in {p for m in reachable(import_graph(), "report") for p in packages_imported(PACKAGE / f"{m}.py")}


def test_a_refused_study_never_imports_tensorflow():
    code = (
        "import sys; from typer.testing import CliRunner; from lrnoise.cli import app; "
        "result = CliRunner().invoke(app, ['study', '--models', 'resnet18']); "
        "print(result.exit_code, 'tensorflow' in sys.modules, 'keras' in sys.modules); print(result.output)"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.stdout.splitlines()[0] == "2 False False", proc.stdout + proc.stderr[-2000:]
    assert "unknown model 'resnet18'" in proc.stdout
