"""The package's shape: the method at the top of ``mim_core`` (at most 13 modules), no import circle
(module-level or inside functions), and ``mim_core`` imports nothing from the demo or the clinical module."""

import ast
from pathlib import Path

from tests.conftest import REPO

PACKAGE = REPO / "mim_core"


def _module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> set[str]:
    """Every module this file imports, anywhere in it (relative imports resolved)."""
    package = _module_name(path) if path.name == "__init__.py" else _module_name(path).rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = package.rsplit(".", node.level - 1)[0] if node.level else ""
            module = ".".join(p for p in (base, node.module or "") if p)
            found.add(module)
            found |= {f"{module}.{alias.name}" for alias in node.names}  # `from . import report`
    return found


def test_at_most_thirteen_modules_at_the_top_of_the_package():
    top = sorted(p.stem for p in PACKAGE.glob("*.py") if not p.stem.startswith("__"))
    assert len(top) <= 13, top


def test_no_import_circle_and_no_import_of_the_periphery():
    files = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph = {name: {m for m in _imports(path) if m in files and m != name} for name, path in files.items()}
    for name, path in files.items():
        outside = {m.split(".")[0] for m in _imports(path)} & {"demo", "clinical", "bench", "tests"}
        assert not outside, f"{name} imports {outside}"

    def reach(start: str) -> set[str]:
        seen, todo = set(), [start]
        while todo:
            for nxt in graph[todo.pop()] - seen:
                seen.add(nxt)
                todo.append(nxt)
        return seen

    # packages' __init__ re-export their modules; a circle through an __init__ is still a circle elsewhere
    circles = [name for name in files if not name.endswith("__main__") and name != "mim_core" and name in reach(name)]
    assert not circles, circles
