"""README's module table lists exactly the modules of shared/ (and names only files that exist)."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_readme_module_table_matches_the_package() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    table = readme.split("| module | responsibility |", 1)[1].split("\n\n", 1)[0]
    listed = set(re.findall(r"^\| `([^`]+\.py)` \|", table, flags=re.M))
    modules = {
        str(path.relative_to(ROOT))
        for path in (ROOT / "shared").rglob("*.py")
        if path.name not in ("__init__.py", "__main__.py")
    }
    assert modules - listed == set(), "modules missing from README's module table"
    missing = {name for name in listed if not (ROOT / name).exists()}
    assert missing == set(), "README lists files that do not exist"
