"""DESIGN.md's import rules, checked on the source (no cycles by construction)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
OURS = ("yagna", "market", "payments", "exeunit", "requestor_sdk")

# package -> top-level modules of ours it may import
ALLOWED = {
    "yagna/core": ("yagna.core",),
    "market": ("market", "yagna.core"),
    "payments": ("payments", "yagna.core"),
    "exeunit": ("exeunit", "yagna.core"),
    "requestor_sdk": ("requestor_sdk", "yagna.core"),
}


def _imports(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(), str(path))
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.append(node.module)
    return out


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_package_imports_only_what_design_allows(package: str) -> None:
    allowed = ALLOWED[package]
    offenders = []
    for path in sorted((ROOT / package).rglob("*.py")):
        for name in _imports(path):
            if name.split(".")[0] in OURS and not any(name == a or name.startswith(a + ".") for a in allowed):
                offenders.append(f"{path.relative_to(ROOT)} imports {name}")
    assert not offenders, "\n".join(offenders)


def test_core_does_not_import_libp2p() -> None:
    for path in (ROOT / "yagna" / "core").rglob("*.py"):
        assert not any(n.split(".")[0] == "libp2p" for n in _imports(path)), path
