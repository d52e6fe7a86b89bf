"""Deployment speed as users deploy: every exported student against the teacher in ONNX Runtime, fp32 and
int8, at batch 1 and 32, and a probe of what int8 can buy on this CPU.

    python bench/deploy.py [--students bilstm_kd tinybert ...] [--repeats 30] [--threads 2]

Needs the exports (`dvc repro`). The teacher is exported the way `evaluate` does it (TorchScript ONNX,
dynamic int8) into a scratch folder. All runners take turns on each batch of real SST-2 dev texts
(`evaluate`'s interleaved harness), so load on the machine hits all alike. Prints:

1. a table: median ms per call, the speed-up against the teacher in the same runtime, and int8's
   speed-up over fp32 ONNX of the same model; then the issue's targets, each with the figure measured
   (BiLSTM >= 20x and `tinybert` >= 4x at batch 1 in fp32 ONNX; int8 >= 1.5x over fp32 at batch 32);
2. the CPU's int8 instructions (AVX-512 VNNI, AVX-VNNI, AMX) and one GEMM of a student's feed-forward
   shape (1,024 x 384 x 1,536) in fp32 and int8 (onnxruntime's MatMul vs MatMulInteger): int8 can only
   be faster end to end where its GEMM is faster.
"""

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from distillery.config import EvaluateConfig, from_section
from distillery.data.prepare import load_prepared
from distillery.evaluate.latency import latencies_ms
from distillery.evaluate.report import student_runners, teacher_runners
from distillery.export.runtime import session
from distillery.students import load_student

REPO = Path(__file__).resolve().parents[1]


def cpu_int8_flags() -> list[str]:
    try:
        flags = next(line for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("flags")).split()
    except (OSError, StopIteration):
        return []
    return [f for f in ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "amx_int8", "amx_bf16") if f in flags]


def gemm_probe(threads: int, repeats: int = 30) -> tuple[float, float]:
    """ms for (1024 x 384) @ (384 x 1536) in fp32 MatMul and in dynamically quantised int8, onnxruntime."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper
    from onnxruntime.quantization import QuantType, quantize_dynamic

    rng = np.random.default_rng(0)
    w = numpy_helper.from_array(rng.standard_normal((384, 1536)).astype(np.float32), "w")
    graph = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["y"])], "gemm",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 384])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 1536])], [w])
    x = rng.standard_normal((1024, 384)).astype(np.float32)
    with tempfile.TemporaryDirectory() as d:
        onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), f"{d}/f.onnx")
        quantize_dynamic(f"{d}/f.onnx", f"{d}/q.onnx", weight_type=QuantType.QInt8)
        sessions = [session(f"{d}/f.onnx", threads), session(f"{d}/q.onnx", threads)]
        times = [[], []]
        for r in range(5 + repeats):
            for k, s in enumerate(sessions):
                t = time.perf_counter()
                s.run(None, {"x": x})
                if r >= 5:
                    times[k].append((time.perf_counter() - t) * 1000)
    return float(np.median(times[0])), float(np.median(times[1]))


def main() -> None:
    import yaml

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--students", nargs="*", help="export folders under --exports (default: all with model.onnx)")
    ap.add_argument("--exports", type=Path, default=REPO / "exports")
    ap.add_argument("--teacher", type=Path, default=REPO / "models/teacher")
    ap.add_argument("--prepared", type=Path, default=REPO / "data/prepared")
    ap.add_argument("--repeats", type=int, default=30)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()

    section = yaml.safe_load((REPO / "params.yaml").read_text())["evaluate"]
    cfg = from_section(EvaluateConfig, "evaluate", {**section, "repeats": args.repeats, "threads": args.threads,
                                        "runtimes": ["pytorch", "onnx", "int8"], "batch_sizes": [1, 32]})
    import torch

    torch.set_num_threads(args.threads)
    prep = load_prepared(args.prepared)
    dev, pair, n_labels = prep.dev, prep.task.is_pair, prep.num_labels
    names = args.students or sorted(p.name for p in args.exports.iterdir() if (p / "model.onnx").is_file()
                                    or (p / "embeddings.onnx").is_file())
    with tempfile.TemporaryDirectory() as scratch:
        runners = [r for r in teacher_runners(args.teacher, dev, pair, n_labels, Path(scratch), cfg)
                   if r.runtime != "pytorch"]
        for name in names:
            model, stok, sinfo = load_student(REPO / "models/students" / name)
            runners += [r for r in student_runners(name, sinfo["family"], model, stok, int(sinfo["max_seq_len"]),
                                            REPO / "models/students" / name, args.exports / name, cfg)
                        if r.runtime != "pytorch"]
        ms = {bs: dict(zip([(r.model, r.runtime) for r in runners], latencies_ms(runners, dev, bs, cfg, pair)))
              for bs in (1, 32)}
    models = ["teacher"] + names
    print(f"\nONNX Runtime, {args.threads} threads, median of {args.repeats} interleaved calls on SST-2 dev texts (ms; "
          "in brackets: against the teacher in the same runtime)\n")
    print("| model | fp32 @bs1 | int8 @bs1 | fp32 @bs32 | int8 @bs32 | int8 over fp32 @bs1 | @bs32 |")
    print("|---|---|---|---|---|---|---|")
    for m in models:
        cells = []
        for bs in (1, 32):
            for rt in ("onnx", "int8"):
                v, t = ms[bs].get((m, rt)), ms[bs].get(("teacher", rt))
                cells.append("-" if v is None else f"{v:.2f} ({t / v:.1f}x)")
        ratios = [f"{ms[bs][(m, 'onnx')] / ms[bs][(m, 'int8')]:.2f}x" if (m, "int8") in ms[bs] else "-" for bs in (1, 32)]
        print(f"| {m} | " + " | ".join(cells + ratios) + " |")
    t1 = ms[1][("teacher", "onnx")]
    print("\ntargets (fp32 ONNX against the fp32 ONNX teacher; int8 against fp32 ONNX of the same model):")
    for m in names:
        if m.startswith("bilstm"):
            print(f"  {m}: {t1 / ms[1][(m, 'onnx')]:.1f}x at batch 1 (target 20x)")
    if "tinybert" in names:
        print(f"  tinybert: {t1 / ms[1][('tinybert', 'onnx')]:.1f}x at batch 1 (target 4x)")
    for m in names:
        if not m.startswith("bilstm") and (m, "int8") in ms[32]:
            print(f"  {m}: int8 {ms[32][(m, 'onnx')] / ms[32][(m, 'int8')]:.2f}x over fp32 at batch 32 (target 1.5x)")
    fp32, int8 = gemm_probe(args.threads)
    print(f"\nCPU int8 instructions: {', '.join(cpu_int8_flags()) or 'none found'}")
    print(f"GEMM 1024x384 @ 384x1536, onnxruntime: fp32 {fp32:.2f} ms, int8 {int8:.2f} ms -> int8 {fp32 / int8:.2f}x")


if __name__ == "__main__":
    main()
