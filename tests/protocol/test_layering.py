"""protocol/ sits right above core: it imports only ``swarmget.core`` and pydantic."""

from __future__ import annotations

import ast
from pathlib import Path

import swarmget.protocol

ALLOWED = ("swarmget.core", "swarmget.protocol", "pydantic", "__future__", "typing")
ALLOWED += ("collections", "dataclasses", "enum", "datetime", "json", "re")  # pure standard library


def _imports(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module is not None:
            found.add(node.module)
            if node.module == "swarmget":
                found |= {f"swarmget.{alias.name}" for alias in node.names}
    return found


def test_protocol_imports_only_core_and_pydantic() -> None:
    package = Path(swarmget.protocol.__file__).parent
    files = sorted(package.glob("*.py"))
    assert len(files) >= 6
    for path in files:
        for name in _imports(path):
            assert name.startswith(ALLOWED), f"{path.name} imports {name}"
