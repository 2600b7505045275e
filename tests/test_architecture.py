"""The shape of the code: no import cycles between modules, engines never reach back into the runner."""

from __future__ import annotations

import ast
import inspect
import re
from pathlib import Path

import autolabel
from autolabel.labelling import pipeline

PACKAGE = Path(autolabel.__file__).parent


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path, known: set[str]) -> set[str]:
    """Every autolabel module `path` imports, at the top or inside functions (a lazy import is still a dependency)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name in known}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for alias in node.names:
                full = f"{node.module}.{alias.name}"
                found.add(full if full in known else node.module)
    return {m for m in found if m in known and m != "autolabel"}  # the package root is only a facade


def graph() -> dict[str, set[str]]:
    files = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    return {name: imports_of(path, set(files)) - {name} for name, path in files.items() if name != "autolabel"}


def test_no_module_imports_itself_back_through_others() -> None:
    edges = graph()
    state: dict[str, int] = {}
    cycles = []

    def visit(node: str, stack: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == 1:
                cycles.append(stack[stack.index(nxt):] + [nxt])
            elif nxt not in state:
                visit(nxt, [*stack, nxt])
        state[node] = 2

    for node in sorted(edges):
        if node not in state:
            visit(node, [node])
    assert cycles == []


def test_engines_and_stages_never_import_the_runner_or_the_cli() -> None:
    edges = graph()
    for name in ("autolabel.labelling.engines.local", "autolabel.labelling.engines.ray",
                 "autolabel.labelling.engines.base", "autolabel.embedding.stages", "autolabel.labelling.output",
                 "autolabel.core.config"):
        assert not {m for m in edges[name] if m in ("autolabel.labelling.pipeline", "autolabel.api")
                    or m.startswith("autolabel.cli")}, name


def test_run_only_composes() -> None:
    lines = inspect.getsource(pipeline.run).splitlines()
    assert len(lines) <= 40, f"run() has {len(lines)} lines"


def test_records_are_the_ground_floor_and_output_imports_downward() -> None:
    """Counts, Batch, Shard and file identity live in records.py, which imports no other layer of the run; output
    no longer reaches up into engines or stages for them."""
    edges = graph()
    assert edges["autolabel.core.records"] <= {"autolabel.core.storage"}
    assert not {m for m in edges["autolabel.labelling.output"]
                if m.startswith(("autolabel.labelling.engines", "autolabel.embedding.stages"))}
    assert "autolabel.learn.examples" not in edges["autolabel.embedding.stages"]


TABLE_IO = re.compile(r"pq\.|pd\.read_|\.to_csv\(|\.to_parquet\(|pyarrow\.csv|pacsv|pcsv|pyarrow\.json|read_schema")


def test_only_the_table_package_reads_or_writes_table_files() -> None:
    """Parquet, CSV and JSONL tables are read and written through autolabel/table/ alone, and the names of the
    on-disk format (the CSV sidecar's suffix, a shard folder's manifest, lock and parts) are spelled once."""
    sources = {p.relative_to(PACKAGE).as_posix(): p.read_text() for p in PACKAGE.rglob("*.py")}
    assert sorted(name for name, text in sources.items()
                  if not name.startswith("table/") and TABLE_IO.search(text)) == []
    for literal, home in (('".autolabel.json"', "table/format.py"), ('"_autolabel.json"', "core/fileio.py"),
                          ('"_autolabel.lock"', "core/fileio.py"), ('"part-', "core/fileio.py")):
        assert [name for name, text in sources.items() if literal in text] == [home], literal


def test_the_model_side_imports_nothing_above_it_and_review_does_not_import_audit() -> None:
    """embedding/ (models, cache, stages, the Session) and what lies below it serve every command, so they import no
    command's package; the review queue reads embeddings through the Session, not through the audit."""
    edges = graph()
    above = tuple(f"autolabel.{p}" for p in ("labelling", "learn", "review", "audit", "serve", "api", "cli"))
    for name, imported in edges.items():
        if name.startswith(("autolabel.core", "autolabel.classifier", "autolabel.embedding")):
            assert not {m for m in imported if m.startswith(above)}, name
        if name.startswith("autolabel.review"):
            assert not {m for m in imported if m.startswith("autolabel.audit")}, name


# The packages, lowest floor first: a module imports its own package and those below it, never one above.
FLOORS = ("core", "task", "table", "classifier", "embedding", "learn", "labelling", "review", "audit", "serve", "api",
          "cli", "__main__")


def floor_of(module: str) -> int:
    return FLOORS.index(module.split(".")[1])


def sources_of_package() -> dict[str, str]:
    return {p.relative_to(PACKAGE).as_posix(): p.read_text() for p in sorted(PACKAGE.rglob("*.py"))}


def test_packages_import_only_downward() -> None:
    upward = sorted(f"{src} -> {dst}" for src, dsts in graph().items() for dst in dsts
                    if src.count(".") and dst.count(".") and floor_of(dst) > floor_of(src))
    assert upward == []


def test_every_module_sits_in_a_package_of_the_plan() -> None:
    assert sorted(p.name for p in PACKAGE.glob("*.py")) == ["__init__.py", "__main__.py", "api.py"]
    packages = sorted(p.name for p in PACKAGE.iterdir() if (p / "__init__.py").is_file())
    assert packages == sorted(f for f in FLOORS if f not in ("api", "__main__"))


def test_no_function_is_longer_than_60_lines() -> None:
    long = [f"{name}:{node.lineno} {node.name}" for name, text in sources_of_package().items()
            for node in ast.walk(ast.parse(text)) if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
            and node.end_lineno is not None and node.end_lineno - node.lineno + 1 > 60]
    assert long == []


def test_at_most_four_modules_touch_table_files() -> None:
    assert len([name for name, text in sources_of_package().items() if TABLE_IO.search(text)]) <= 4


def test_the_single_or_multi_label_question_lives_in_few_files() -> None:
    """The task object answers it: the spec reads the YAML key, task/ implements both, the classifier scores."""
    switch = re.compile(r"multi_label|MultiLabel|multilabel")
    assert len([name for name, text in sources_of_package().items() if switch.search(text)]) <= 10


def test_the_model_and_the_cache_are_built_in_one_place() -> None:
    built = {name for name, text in sources_of_package().items()
             if re.search(r"\b(EmbeddingCache|LazyModel)\(", text)}
    assert built == {"embedding/session.py"}
