"""Layering rules from ARCHITECTURE.md, checked on the source tree."""

from __future__ import annotations

import ast
from pathlib import Path

PKG = Path(__file__).resolve().parents[1] / "airflow_provider_deepocr"
HEAVY = {
    "torch",
    "transformers",
    "vllm",
    "great_expectations",
    "fitz",
    "pymupdf",
    "pandas",
    "rapidocr",
    "cv2",
}


def _imports(tree: ast.AST, top_level_only: bool) -> set[str]:
    nodes = tree.body if top_level_only and isinstance(tree, ast.Module) else list(ast.walk(tree))
    names: set[str] = set()
    for node in nodes:
        if isinstance(node, ast.Import):
            names.update(a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def test_core_never_imports_airflow() -> None:
    offenders = []
    for path in sorted((PKG / "core").rglob("*.py")):
        if "airflow" in _imports(ast.parse(path.read_text()), top_level_only=False):
            offenders.append(str(path.relative_to(PKG)))
    assert not offenders, f"core must not import airflow: {offenders}"


def test_no_heavy_import_at_module_top_level() -> None:
    offenders = []
    for path in sorted(PKG.rglob("*.py")):
        heavy = _imports(ast.parse(path.read_text()), top_level_only=True) & HEAVY
        if heavy:
            offenders.append(f"{path.relative_to(PKG)}: {sorted(heavy)}")
    assert not offenders, f"heavy imports belong inside functions: {offenders}"


def test_the_checks_see_imports() -> None:
    """The scanner itself finds nested and top-level imports (so the two tests above can fail)."""
    tree = ast.parse("import os\ndef f():\n    from airflow.sdk import DAG\n    import torch\n")
    assert _imports(tree, top_level_only=True) == {"os"}
    assert _imports(tree, top_level_only=False) == {"os", "airflow", "torch"}
