"""Every stage's `dvc.yaml` deps cover the code its command runs, so that editing a module re-runs
every stage that imports it (and only those)."""

import ast
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
SRC = REPO / "src"


def _module_file(name: str) -> Path | None:
    """The file of a `distillery.*` or `stages.*` module (a package's __init__.py)."""
    root = SRC if name.startswith("distillery") else REPO
    base = root.joinpath(*name.split("."))
    for p in (base.with_suffix(".py"), base / "__init__.py"):
        if p.is_file():
            return p
    return None


def _imports(path: Path) -> set[str]:
    """Modules of this project that a file imports, at the top or inside a function."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.add(node.module)
            out |= {f"{node.module}.{a.name}" for a in node.names}  # `from pkg import module`
        elif isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
    return {m for m in out if m.split(".")[0] in ("distillery", "stages") and _module_file(m)}


def _docstring_only(path: Path) -> bool:
    """A package marker: a docstring and constants (`__version__`), no code that could change an output."""
    body = ast.parse(path.read_text(encoding="utf-8")).body
    return all(isinstance(n, (ast.Expr, ast.Assign)) and isinstance(n.value, ast.Constant) for n in body)


def closure(module: str) -> set[Path]:
    """Every project file that running `module` may execute (its imports, transitively, with the
    packages' __init__ files that importing them runs)."""
    seen: set[Path] = set()
    todo = [module]
    while todo:
        name = todo.pop()
        parts = name.split(".")
        for i in range(1, len(parts) + 1):  # importing a.b.c runs a/__init__, a/b/__init__ too
            f = _module_file(".".join(parts[:i]))
            if f is not None and f not in seen and not _docstring_only(f):
                seen.add(f)
                todo.extend(_imports(f))
    return seen


def _stage_modules() -> dict[str, str]:
    """DVC stage name -> the stages.* module of its `distillery <command>`."""
    doc = yaml.safe_load((REPO / "dvc.yaml").read_text())
    out = {}
    for name, stage in doc["stages"].items():
        spec = stage.get("do", stage)
        command = spec["cmd"].split()[1]
        out[name] = (spec, f"stages.{command.replace('-', '_')}")
    return out


def test_stage_deps_cover_every_imported_module():
    for name, (spec, module) in _stage_modules().items():
        deps = [REPO / d for d in spec.get("deps", []) if "$" not in d]
        files = closure(module) | closure("stages.common")
        uncovered = sorted(str(f.relative_to(REPO)) for f in files
                           if not any(f == d or d in f.parents for d in deps))
        assert not uncovered, f"dvc.yaml stage {name}: add deps for {uncovered}"


def test_closure_follows_lazy_imports(tmp_path):
    files = {str(f.relative_to(REPO)) for f in closure("stages.distill")}
    assert "src/distillery/distill/recipe.py" in files  # imported inside the command function
    assert "src/distillery/losses/features.py" in files  # registered by the losses package
    assert "src/distillery/evaluate/report.py" not in files


@pytest.mark.parametrize("name", ["mtdnn", "cmlm"])
def test_study_stage_deps_cover_every_imported_module(name):
    """The same for each study (its paths are relative to its folder)."""
    study = REPO / "studies" / name
    doc = yaml.safe_load((study / "dvc.yaml").read_text())
    for stage_name, stage in doc["stages"].items():
        spec = stage.get("do", stage)
        module = f"stages.{spec['cmd'].split()[1].replace('-', '_')}"
        deps = [(study / d).resolve() for d in spec.get("deps", []) if "$" not in d]
        files = closure(module) | closure("stages.common")
        uncovered = sorted(str(f.relative_to(REPO)) for f in files if not any(f == d or d in f.parents for d in deps))
        assert not uncovered, f"{study}/dvc.yaml stage {stage_name}: add deps for {uncovered}"
