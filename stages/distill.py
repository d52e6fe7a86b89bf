"""`distillery distill`: train one student from the cached teacher logits.

Student settings come as `--key value` pairs, exactly as DVC unpacks a `students.<name>` block of
params.yaml (`${item}` in dvc.yaml), so a by-hand run reads the same way:

    distillery distill --name bilstm_kd --model bilstm --losses.mse_logits 1.0 \\
        --model_args.hidden_size 150 --epochs 3 --lr 1e-3
"""

import dataclasses
from pathlib import Path
from typing import Annotated, Optional

import typer

from stages.common import one_line_errors

TOP_LEVEL = ("model", "transfer_set", "epochs", "batch_size", "lr", "temperature", "max_examples", "max_seq_len",
             "seed", "optimizer", "weight_decay", "warmup_ratio")


def _convert(raw: str):
    low = raw.lower()
    if low in ("true", "false"):
        return low == "true"
    for cast in (int, float):
        try:
            return cast(raw)
        except ValueError:
            pass
    return raw


def parse_student_args(name: str, args: list[str]) -> dict:
    """`--key value` pairs -> StudentConfig kwargs: a top-level field, `losses.X`, `model_args.X`
    (several values, or the key repeated as DVC's `parsing.list: append` writes it, make a list), or `intermediate.<field>` / `intermediate.losses.X`."""
    from distillery.config import STEP_FIELDS, StudentConfig
    from distillery.errors import DistilleryError

    types = {f.name: f.type for f in dataclasses.fields(StudentConfig)}
    out: dict = {"losses": {}, "model_args": {}}
    i = 0
    while i < len(args):
        key = args[i]
        if not key.startswith("--"):
            raise DistilleryError(f"distill: unexpected argument {key!r}; student settings are --key value pairs")
        key = key[2:]
        negated = key.startswith("no-")
        key = (key[3:] if negated else key).replace("-", "_")
        values = []
        i += 1
        while i < len(args) and not args[i].startswith("--"):
            values.append(args[i])
            i += 1
        if negated:
            values = ["false"]  # `--no-key`, as DVC writes a false boolean
        elif not values:
            values = ["true"]  # a bare flag, as DVC writes a true boolean
        value = values[0] if len(values) == 1 else None
        head, _, sub = key.partition(".")
        if head == "model_args" and sub:
            got = [_convert(v) for v in values]
            if sub in out["model_args"]:  # `--model_args.x 2 --model_args.x 4`: a list, as DVC appends one
                prev = out["model_args"][sub]
                out["model_args"][sub] = (prev if isinstance(prev, list) else [prev]) + got
            else:
                out["model_args"][sub] = got[0] if len(got) == 1 else got
        elif value is None:
            raise DistilleryError(f"param students.{name}.{key}: takes one value, got {len(values)}")
        elif head == "losses" and sub:
            out["losses"][sub] = _convert(value)
        elif head == "intermediate" and sub:
            inter = out.setdefault("intermediate", {})
            field_, _, loss = sub.partition(".")
            if field_ == "losses" and loss:
                inter.setdefault("losses", {})[loss] = _convert(value)
            elif field_ in STEP_FIELDS and field_ != "losses" and not loss:
                inter[field_] = value if field_ == "transfer_set" else _convert(value)
            else:
                raise DistilleryError(
                    f"param students.{name}.{key}: unknown setting; use intermediate.losses.<loss> or "
                    f"intermediate.<{'|'.join(f for f in STEP_FIELDS if f != 'losses')}>"
                )
        elif head in TOP_LEVEL:
            t = types[head]
            out[head] = value if t in (str, "str") else _convert(value)
        else:
            raise DistilleryError(
                f"param students.{name}.{key}: unknown setting; use {', '.join(TOP_LEVEL)}, losses.<loss>, "
                "model_args.<arg> or intermediate.<setting>"
            )
    return out


@one_line_errors
def distill(
    ctx: typer.Context,
    name: Annotated[str, typer.Option(help="Student name: its output folder and its block in params.yaml.")],
    prepared: Annotated[Path, typer.Option(help="Folder written by `prepare`.")] = Path("data/prepared"),
    teacher: Annotated[Path, typer.Option(help="Teacher folder (its tokenizer, fingerprint and, for some students, weights).")] = Path("models/teacher"),
    logits: Annotated[Path, typer.Option(help="Folder written by `soft-labels`.")] = Path("data/logits"),
    augmented: Annotated[Optional[Path], typer.Option(help="Folder written by `augment`.")] = Path("data/augmented"),
    out: Annotated[Optional[Path], typer.Option(help="Output folder (default models/students/<name>).")] = None,
    metrics: Annotated[Optional[Path], typer.Option(help="Metrics JSON (default metrics/students/<name>.json).")] = None,
    live_dir: Annotated[Optional[Path], typer.Option(help="DVCLive folder (default dvclive/students/<name>).")] = None,
) -> None:
    """Train one student. Extra `--key value` pairs set it: --model (bilstm, bert, distilbert, pkd_skip,
    pkd_last, tinybert, mobilebert), --losses.<loss> WEIGHT (ce, soft_ce, kl, mse_logits, cosine_hidden,
    pkd, tinybert_embedding, tinybert_hidden, tinybert_attention, mobilebert_feature_map,
    mobilebert_attention), --model_args.<arg> VALUE, --transfer_set (augmented|train), --epochs,
    --batch_size, --lr, --temperature, --max_examples, --max_seq_len, --seed, --optimizer (adam|adamw),
    --weight_decay, --warmup_ratio, and --intermediate.<same> for a first, layer-to-layer step."""
    from distillery.config import StudentConfig, check_name
    from distillery.errors import DistilleryError

    check_name(name, "--name (a key of students in params.yaml)")  # before anything becomes a path
    kwargs = parse_student_args(name, list(ctx.args))
    if "model" not in kwargs:
        raise DistilleryError(f"param students.{name}.model: missing; name a student family, e.g. --model bilstm")
    cfg = StudentConfig(name=name, **kwargs)  # validated before the heavy imports below

    from distillery.distill.train import distill as run
    m = run(cfg, prepared, teacher, logits, augmented,
            out or Path("models/students") / name,
            metrics or Path("metrics/students") / f"{name}.json",
            live_dir or Path("dvclive/students") / name)
    key = next(k for k in m if k.startswith("dev_"))
    typer.echo(f"{name}: dev {key[4:]} {m[key]:.4f} -> {out or Path('models/students') / name}")
