"""What every stage command shares: one-line errors and a non-zero exit."""

import functools
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

from distillery.errors import DistilleryError


def one_line_errors(fn: Callable) -> Callable:
    """Report wall time on success. Turn every failure into one line on stderr and exit status 2:
    a DistilleryError as it is; an operating-system error with the path it names; anything else
    (a bug) with its type, and the traceback only when DISTILLERY_TRACEBACK=1."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        t0 = time.perf_counter()
        try:
            result = fn(*args, **kwargs)
            print(f"[{fn.__name__.replace('_', '-')} took {time.perf_counter() - t0:.1f} s]", file=sys.stderr)
            return result
        except DistilleryError as e:
            print(f"error: {e}", file=sys.stderr)
        except KeyboardInterrupt:
            print("error: interrupted; outputs are written atomically, so run the command again", file=sys.stderr)
            sys.exit(130)
        except OSError as e:
            where = f"{e.filename}: " if e.filename else ""
            print(f"error: {where}{e.strerror or e}; check the path, its permissions and free space", file=sys.stderr)
        except Exception as e:  # noqa: BLE001 - the one place a stage turns a bug into one line
            if os.environ.get("DISTILLERY_TRACEBACK") == "1":
                raise
            first = str(e).splitlines()[0] if str(e) else ""
            print(f"error: unexpected {type(e).__name__}: {first} (a bug in distillery: please report it; "
                  "DISTILLERY_TRACEBACK=1 shows the traceback)", file=sys.stderr)
        sys.exit(2)

    return wrapper


PARAMS_HELP = "params file: this stage reads its own section of it (the one place where defaults are written)."
SECTION_HELP = "the params section to read (a dotted path reads a nested block: tasks.sst2)."
SET_HELP = "KEY=VALUE: override one setting of the section for this run (repeatable), e.g. --set lr=0.002."


def read_params(params: Path, required: bool = False) -> dict:
    """The parsed params file; {} where it does not exist and the stage can do without it. A key given twice, a tab
    where YAML wants spaces, a byte that is not UTF-8 and a student name that would be a path (`../teacher`) are
    refused, naming the line: every command checks the whole file, so the first one run stops such a key."""
    from distillery.config import check_name, load_yaml

    if not params.is_file():
        if required:
            raise DistilleryError(f"--params {params}: no such file; run in the project folder or give --params")
        return {}
    doc = load_yaml(params) or {}
    if not isinstance(doc, dict):
        raise DistilleryError(f"{params}: must be a mapping of sections (prepare:, teacher:, ...)")
    students = doc.get("students")
    for name in students if isinstance(students, dict) else ():
        check_name(name, f"students.{name} in {params} (a student's name becomes a folder and a DVC stage)")
    return doc


def apply_sets(values: dict, sets: list[str]) -> dict:
    """`--set a.b=1` pairs applied to a copy of `values` (YAML scalars: 1, 0.5, true, [1, 2], text)."""
    import copy

    import yaml

    out = copy.deepcopy(values)
    for item in sets:
        key, eq, raw = item.partition("=")
        if not eq or not key or any(not part for part in key.split(".")):
            raise DistilleryError(f"--set {item!r}: expected KEY=VALUE, e.g. --set lr=0.002")
        try:
            value = yaml.safe_load(raw) if raw.strip() else ""
        except yaml.YAMLError:
            value = raw
        if isinstance(value, str):  # YAML 1.1 reads 2e-4 (no dot) as text; a number is meant
            try:
                value = float(value)
            except ValueError:
                pass
        node = out
        *parents, last = key.split(".")
        for part in parents:
            if not isinstance(node.get(part), dict):
                node[part] = {}
            node = node[part]
        node[last] = value
    return out


def section_values(doc: dict, section: str):
    """`doc[section]`, where a dotted section (`tasks.sst2`) walks nested blocks; {} where absent."""
    node = doc
    for part in section.split("."):
        node = node.get(part, {}) if isinstance(node, dict) else {}
    return node


def section_values_set(doc: dict, section: str, sets: list[str]):
    """A section's values with `--set` overrides applied (as they are where the section is not a block)."""
    values = section_values(doc, section)
    return apply_sets(values, sets) if isinstance(values, dict) else values


def stage_config(cls: type, params: Path, section: str, sets: list[str]):
    """A stage's config: its section of `params`, then `--set` overrides, validated."""
    from distillery.config import from_section

    values = section_values(read_params(params, required=True), section)
    if not isinstance(values, dict):
        return from_section(cls, section, values)  # refuses it, naming the section
    return from_section(cls, section, apply_sets(values, sets))


def check_outputs(kind: str, out: Path | None = None, metrics: Path | None = None, live_dir: Path | None = None,
                  out_param: str = "--out") -> None:
    """Before any work: the output folder is absent, empty or this stage's own previous output; the
    metrics file is absent or this stage's own previous metrics; the live folder holds only curves. One line
    naming the option otherwise."""
    from distillery.io import claim_metrics, claim_output

    if out is not None:
        claim_output(out, kind, out_param)
    if metrics is not None:
        claim_metrics(metrics, kind)
    if live_dir is not None:
        claim_output(live_dir, "live", "--live-dir")


def study_task(doc: dict) -> str:
    """The task of the study a params file describes: `distill.common.task` (classification, the main pipeline's,
    where it is not set). Stages whose work differs by task (prepare, teacher, soft-labels, evaluate) ask it."""
    distill = doc.get("distill")
    common = distill.get("common") if isinstance(distill, dict) else None
    return str(common.get("task", "classification")) if isinstance(common, dict) else "classification"


def task_stage(doc: dict, stage: str):
    """The study task's own library call for `stage`, or None where the task does it the classification way."""
    task = study_task(doc)
    if task == "classification":
        return None
    from distillery.tasks import get_task

    return getattr(get_task(task, "distill.common.task"), stage, None)
