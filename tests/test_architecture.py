"""The core (`bot/`, `store/`) never imports a chat platform: Teams support must cost one folder."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PLATFORMS = ("slack_bolt", "slack_sdk", "botbuilder", "botframework")
# The composition root wires the platforms together, so it alone reaches into handlers/.
COMPOSITION_ROOT = {"bot/app.py", "bot/cli.py"}


def imported_modules(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def core_files() -> list[Path]:
    return sorted(p for package in ("bot", "store") for p in (ROOT / package).rglob("*.py"))


def test_no_core_module_imports_a_platform_package() -> None:
    offenders = {
        str(path.relative_to(ROOT)): sorted(m for m in imported_modules(path) if m.split(".")[0] in PLATFORMS)
        for path in core_files()
    }
    assert {k: v for k, v in offenders.items() if v} == {}


def test_only_the_composition_root_reaches_into_handlers() -> None:
    reaching = {
        str(path.relative_to(ROOT))
        for path in core_files()
        if any(m.split(".")[0] in ("handlers", "sandbox") for m in imported_modules(path))
    }
    assert reaching <= COMPOSITION_ROOT


def test_importing_the_core_loads_no_platform_module() -> None:
    modules = [
        ".".join(p.relative_to(ROOT).with_suffix("").parts)
        for p in core_files()
        if str(p.relative_to(ROOT)) not in COMPOSITION_ROOT and "migrations" not in p.parts
    ]
    code = (
        "import importlib, sys\n"
        f"for m in {modules!r}: importlib.import_module(m)\n"
        f"print(sorted(n for n in sys.modules if n.split('.')[0] in {PLATFORMS!r}))"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
