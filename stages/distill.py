"""`distillery distill`: train one student, of any task.

The student is `students.<name>` of params.yaml on top of its family's defaults (`distill.common`,
then `distill.<family group>`); its `task` (a registered task: classification, multitask) says what the
data and the teacher's targets are; `--set key=value` overrides one of its settings for one run:

    distillery distill --name bilstm_kd --set lr=0.002 --set model_args.hidden_size=300
    distillery distill --name single_sst2 --block single_task --set 'tasks=[sst2]'   # a block outside students
"""

from pathlib import Path
from typing import Annotated, Optional

import typer

from stages.common import check_outputs, PARAMS_HELP, apply_sets, one_line_errors, read_params, section_values


@one_line_errors
def distill(
    name: Annotated[str, typer.Option(help="Student name: its block in params.yaml and its output folder.")],
    prepared: Annotated[Path, typer.Option(help="Folder written by `prepare` (multitask: a folder of them, one per task).")] = Path("data/prepared"),
    teacher: Annotated[Path, typer.Option(help="Teacher folder (its tokenizer, fingerprint and, for some students, weights).")] = Path("models/teacher"),
    logits: Annotated[Path, typer.Option(help="Folder written by `soft-labels` (multitask: a folder of ensembles, one per task).")] = Path("data/logits"),
    augmented: Annotated[Optional[Path], typer.Option(help="Folder written by `augment`.")] = Path("data/augmented"),
    out: Annotated[Optional[Path], typer.Option(help="Output folder (default models/students/<name>).")] = None,
    metrics: Annotated[Optional[Path], typer.Option(help="Metrics JSON (default metrics/students/<name>.json).")] = None,
    live_dir: Annotated[Optional[Path], typer.Option(help="DVCLive folder (default dvclive/students/<name>).")] = None,
    params: Annotated[Path, typer.Option(help=PARAMS_HELP)] = Path("params.yaml"),
    block: Annotated[str, typer.Option(help="The params block of this student, if not students.<name> "
                                       "(a dotted path: single_task).")] = "",
    set_: Annotated[list[str], typer.Option("--set", help="KEY=VALUE: override one setting of the student for this run "
                                            "(repeatable), e.g. --set lr=0.002 --set losses.ce=0.5.")] = [],
    checkpoint_minutes: Annotated[float, typer.Option(help="Save the run's state this often (0: never); a killed run "
                                                      "of the same student resumes from it. Results do not depend "
                                                      "on it.")] = 10.0,
) -> None:
    """Train one student: model (a registered family), losses (registered names -> weights), model_args,
    transfer_set, epochs, batch_size, lr, temperature, ... and an optional `intermediate` first step.
    Data-parallel under `torchrun --nproc-per-node N -m stages.cli distill ...` (or `accelerate launch`)."""
    from distillery.config import check_name
    from distillery.errors import DistilleryError

    check_name(name, "--name (a key of students in params.yaml)")  # before anything becomes a path
    doc = read_params(params, required=True)
    where = block or f"students.{name}"
    values = section_values(doc, where) if block else \
        ((doc.get("students") or {}).get(name) if isinstance(doc.get("students"), dict) else None)
    if values is None or values == {}:
        raise DistilleryError(f"param {where}: not in {params}; add a block for it (see README, 'Add a student')")
    if not isinstance(values, dict):
        raise DistilleryError(f"param {where}: must be a block of settings")
    from distillery.distill.recipe import Paths, distill as run, student_config

    cfg = student_config(name, apply_sets(values, set_), doc.get("distill") or {})
    paths = Paths(prepared, teacher, logits, augmented, out or Path("models/students") / name,
                  metrics or Path("metrics/students") / f"{name}.json", live_dir or Path("dvclive/students") / name)
    check_outputs("distill", paths.out, paths.metrics, paths.live)
    m = run(cfg, paths, checkpoint_minutes)
    if m:  # rank 0 (or the only process) reports
        key = next(k for k in m if k.startswith("dev_"))
        typer.echo(f"{name}: dev {key[4:]} {m[key]:.4f} -> {paths.out}")
