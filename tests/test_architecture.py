"""The shape of the house (DESIGN §1): which package may import which, with no exemption and no circle.
The core (`bot/`, `store/`) never imports a chat platform: Teams support must cost one folder."""

from __future__ import annotations

import ast
import subprocess
import sys
from graphlib import CycleError, TopologicalSorter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PLATFORMS = ("slack_bolt", "slack_sdk", "botbuilder", "botframework")
# Each of our packages, and the packages of ours it may import. `retainer/` (the composition root and
# the command line) sits above all of them; nothing imports it. The sandbox is a stand-in for Slack and
# Teams: it knows nothing of the bot.
MAY_IMPORT: dict[str, set[str]] = {
    "store": set(),
    "bot": {"store"},
    "scheduler": {"bot", "store"},
    "handlers": {"bot", "store"},
    "sandbox": set(),
    "retainer": {"bot", "store", "scheduler", "handlers", "sandbox"},
}
CORE = ("bot", "store")


def imported_modules(path: Path, *, at_run_time: bool = False) -> set[str]:
    """The absolute imports of a module; `at_run_time` leaves out those under `if TYPE_CHECKING:`."""
    tree = ast.parse(path.read_text(), str(path))
    if at_run_time:
        for node in ast.walk(tree):
            if isinstance(node, ast.If) and ast.unparse(node.test).endswith("TYPE_CHECKING"):
                node.body = []
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def package_files(*packages: str) -> list[Path]:
    return sorted(p for package in packages for p in (ROOT / package).rglob("*.py"))


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def test_no_core_module_imports_a_platform_package() -> None:
    offenders = {
        str(path.relative_to(ROOT)): sorted(m for m in imported_modules(path) if m.split(".")[0] in PLATFORMS)
        for path in package_files(*CORE)
    }
    assert {k: v for k, v in offenders.items() if v} == {}


def test_each_package_imports_only_the_packages_below_it() -> None:
    crossings = {
        f"{path.relative_to(ROOT)} -> {module}"
        for package, allowed in MAY_IMPORT.items()
        for path in package_files(package)
        for module in imported_modules(path)
        if module.split(".")[0] in MAY_IMPORT
        and module.split(".")[0] != package
        and module.split(".")[0] not in allowed
    }
    assert sorted(crossings) == []


def test_no_circle_between_modules() -> None:
    # Annotations need no import at run time (`from __future__ import annotations`), so a type-only
    # import is not a circle.
    ours = {module_name(p): p for p in package_files(*MAY_IMPORT) if "migrations" not in p.parts}
    graph = {
        name: {
            target
            for module in imported_modules(path, at_run_time=True)
            for target in (module, module.rsplit(".", 1)[0])
            if target in ours and target != name
        }
        for name, path in ours.items()
    }
    # A package's __init__ re-exporting its modules is not a circle of behaviour; a module importing
    # its own package's __init__ back is.
    for name, deps in graph.items():
        graph[name] = {d for d in deps if not name.startswith(d + ".")}
    try:
        TopologicalSorter(graph).prepare()
    except CycleError as circle:
        raise AssertionError(f"import circle: {' -> '.join(circle.args[1])}") from None


def test_importing_the_core_loads_no_platform_module() -> None:
    modules = [module_name(p) for p in package_files(*CORE) if "migrations" not in p.parts]
    code = (
        "import importlib, sys\n"
        f"for m in {modules!r}: importlib.import_module(m)\n"
        f"print(sorted(n for n in sys.modules if n.split('.')[0] in {PLATFORMS!r}))"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
