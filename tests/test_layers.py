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


def _module_name(path: Path) -> str:
    rel = path.relative_to(PKG.parent).with_suffix("")
    parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
    return ".".join(parts)


def _import_graph(root: Path) -> dict[str, set[str]]:
    """Module -> the package modules it imports (top level or inside functions), for every module
    under ``root``. ``from pkg import name`` counts as an import of ``pkg.name`` when that is a
    module; an import of a module's own parent package is not an edge (Python loads it first)."""
    paths = {_module_name(p): p for p in root.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for mod, path in paths.items():
        package = mod if path.name == "__init__.py" else mod.rpartition(".")[0]
        targets: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                targets.update(a.name for a in node.names)
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    up = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                    base = ".".join([*up, base] if base else up)
                targets.add(base)
                targets.update(f"{base}.{a.name}" for a in node.names)
        graph[mod] = {t for t in targets if t in paths and t != mod and not mod.startswith(t + ".")}
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every strongly connected set of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                found.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_core_import_graph_is_acyclic() -> None:
    graph = _import_graph(PKG / "core")
    assert "airflow_provider_deepocr.core.warehouse.loader" in graph  # the scan sees the package
    assert (
        "airflow_provider_deepocr.core.warehouse.rows" in graph["airflow_provider_deepocr.core.validate_gx"]
    )
    assert _cycles(graph) == []


def test_the_cycle_finder_finds_cycles() -> None:
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


DATABASES = {"sqlite", "postgresql", "duckdb", "snowflake", "bigquery", "redshift", "mysql", "mssql"}


def test_only_the_dialects_module_names_a_database() -> None:
    """Database choices are data in core/warehouse/dialects.py: nowhere else in core compares or
    keys on a database name."""
    offenders = []
    for path in sorted((PKG / "core").rglob("*.py")):
        if path == PKG / "core" / "warehouse" / "dialects.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Constant) and node.value in DATABASES:
                offenders.append(f"{path.relative_to(PKG)}:{node.lineno} {node.value!r}")
    assert not offenders, offenders


def test_no_warehouse_module_is_over_450_lines() -> None:
    sizes = {p.name: len(p.read_text().splitlines()) for p in (PKG / "core" / "warehouse").glob("*.py")}
    assert "loader.py" in sizes and max(sizes.values()) <= 450, sizes


def _package_edges(graph: dict[str, set[str]]) -> dict[str, set[str]]:
    """``graph`` with the packages Python runs on the way to each import: importing ``a.b.c`` runs
    ``a/__init__`` and ``a/b/__init__`` first (except the importer's own packages), so a module that
    imports ``pkg.sub`` depends on everything ``pkg/__init__`` imports."""
    out: dict[str, set[str]] = {}
    for mod, targets in graph.items():
        extra = set()
        for t in targets:
            parts = t.split(".")
            for i in range(1, len(parts)):
                pkg = ".".join(parts[:i])
                if pkg in graph and pkg != mod and not mod.startswith(pkg + "."):
                    extra.add(pkg)
        out[mod] = targets | extra
    return out


def test_core_import_graph_with_package_inits_is_acyclic() -> None:
    """No cycle even through a package's ``__init__`` (``core.pipeline`` re-exports its stages, so
    a core module that imports ``core.pipeline.x`` depends on every stage)."""
    graph = _package_edges(_import_graph(PKG / "core"))
    review = "airflow_provider_deepocr.core.review"
    assert "airflow_provider_deepocr.core.work_layout" in graph[review]  # the scan sees core.review's imports
    assert _cycles(graph) == []


def test_the_package_edges_see_inits() -> None:
    graph = {"p": {"p.a"}, "p.a": set(), "q": {"p.a"}}
    assert _package_edges(graph)["q"] == {"p.a", "p"}
    assert _package_edges(graph)["p.a"] == set()  # its own package is not an edge


def test_no_pipeline_module_is_over_400_lines() -> None:
    sizes = {p.name: len(p.read_text().splitlines()) for p in (PKG / "core" / "pipeline").glob("*.py")}
    assert {
        "listing.py",
        "ocr.py",
        "batching.py",
        "assemble.py",
        "parse_validate.py",
        "load.py",
        "run.py",
    } <= set(sizes)
    assert max(sizes.values()) <= 400, sizes


def _function_lengths(tree: ast.AST) -> list[tuple[str, int, int]]:
    """(name, first line, length) of every function: its code, from the first statement after the
    docstring to its last line (the signature and the docstring do not count)."""
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            body = node.body
            if len(body) > 1 and ast.get_docstring(node) is not None:
                body = body[1:]
            out.append((node.name, node.lineno, (node.end_lineno or 0) - body[0].lineno + 1))
    return out


# Over the limit today, in modules another change owns; this list may only shrink.
LONG_FUNCTIONS_ALLOWED: set[str] = set()  # none: build_metadata is split by kind of table


def test_no_function_in_core_is_over_120_lines() -> None:
    offenders = set()
    for path in sorted((PKG / "core").rglob("*.py")):
        for name, _, length in _function_lengths(ast.parse(path.read_text())):
            if length > 120:
                offenders.add(f"{path.relative_to(PKG / 'core')}:{name}")
    assert offenders <= LONG_FUNCTIONS_ALLOWED, sorted(offenders - LONG_FUNCTIONS_ALLOWED)


def test_the_function_lengths_skip_signature_and_docstring() -> None:
    src = 'def f(\n    a: int,\n) -> int:\n    """Doc.\n\n    More."""\n    x = a\n    return x\n'
    assert _function_lengths(ast.parse(src)) == [("f", 1, 2)]


WORK_AREA_TOP = {"runs", "ocr", "records", "reviews", "stats", "shards", "pagecounts"}


def test_only_the_work_layout_spells_a_work_area_path() -> None:
    """Every work-area path comes from core/work_layout.py: nowhere else is ``work.uri(...)`` or
    ``work.list(...)`` called with a literal path segment."""
    offenders = []
    for path in sorted(PKG.rglob("*.py")):
        if path == PKG / "core" / "work_layout.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr in ("uri", "list", "write_json", "write_jsonl", "read_json", "exists")
                and any(
                    isinstance(a, ast.Constant) and str(a.value).split("/")[0] in WORK_AREA_TOP
                    for a in node.args
                )
            ):
                offenders.append(f"{path.relative_to(PKG)}:{node.lineno}")
    assert not offenders, offenders
