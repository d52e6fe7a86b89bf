"""One exception type for every input problem a user can fix.

Stages catch it and print its message as one line, then exit non-zero. Messages say what
was wrong, where (file and line, or param name) and what to do.
"""


class DistilleryError(Exception):
    """A user-facing error: bad input, bad param, mismatched artifacts."""


def damaged_onnx(path, e: BaseException) -> DistilleryError:
    """onnxruntime refusing a graph file (InvalidProtobuf, a truncated file, a missing one) as one line."""
    import re

    first = (str(e).strip().splitlines() or [type(e).__name__])[0]
    first = re.sub(r"^\[ONNXRuntimeError\]( : \w+)* : ", "", first)[:160]  # "... : 7 : INVALID_PROTOBUF : " 
    state = "missing" if "No such file" in first or "does not exist" in first else f"damaged ({first})"
    return DistilleryError(f"{path}: ONNX graph {state}; re-run `distillery export` for this model "
                           "(dvc repro -f export@<name>)")
