"""shared/ is the deployed app: it never imports the local stand-ins, the benchmarks or the tools.

Read from the source's own import statements (ast), so an import inside a function counts too.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SHARED = Path(__file__).resolve().parents[2] / "shared"
FORBIDDEN = ("localcloud", "bench", "tools", "tests", "fixtures")


def imported_modules(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
    return found


def test_the_package_is_read() -> None:
    modules = sorted(SHARED.rglob("*.py"))
    assert len(modules) > 30
    assert "shared.config.settings" in imported_modules(SHARED / "runtime.py")


@pytest.mark.parametrize("path", sorted(SHARED.rglob("*.py")), ids=lambda p: str(p.relative_to(SHARED)))
def test_shared_never_imports_localcloud_bench_or_tools(path: Path) -> None:
    bad = {name for name in imported_modules(path) if name.split(".")[0] in FORBIDDEN}
    assert not bad, f"{path.relative_to(SHARED.parent)} imports {sorted(bad)}"


def test_the_check_catches_an_import_inside_a_function(tmp_path: Path) -> None:
    module = tmp_path / "m.py"
    module.write_text("def f():\n    from localcloud.stack import Stack\n    import bench.harness\n")
    assert {"localcloud.stack", "bench.harness"} <= imported_modules(module)
