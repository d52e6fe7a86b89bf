#!/bin/bash
# The CUDA check of the core: the stage commands on a GPU. SST-2 ($DATA: train.tsv/dev.tsv, MAX_TRAIN rows), the
# teacher $BASE fine-tuned 1 epoch with bf16, soft labels in bf16 and in fp32 (time, and how far apart), the
# 3-layer student bert3_kd distilled through the one Recipe (bf16 autocast), then the same student under
# `torchrun --nproc_per_node 1` (the data-parallel path: NCCL process group). Figures go to $OUT/gpu_check.json.
#   DATA=../shared/data/glue/SST-2 BASE=all-MiniLM-L6-v2 OUT=/tmp/gpu bash bench/gpu_check.sh
set -e
REPO=$(realpath "$(dirname "$0")/.."); DATA=$(realpath "$DATA"); OUT=${OUT:-/tmp/gpu_check}
WORK=$(mktemp -d); trap 'rm -rf "$WORK"' EXIT; cd "$WORK"
export PYTHONPATH=$REPO:$REPO/src${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
python3 - <<PY
import yaml
doc = yaml.safe_load(open("$REPO/params.yaml"))
doc["prepare"].update(data_dir="$DATA", max_train=${MAX_TRAIN:-8000}, max_dev=0)
doc["teacher"].update(base_model="$BASE", epochs=1, bf16=True)
doc["soft_labels"].update(bf16=True, features=[])
doc["students"] = {"bert3_kd": {**doc["students"]["bert3_kd"], "transfer_set": "train", "epochs": ${EPOCHS:-1}}}
yaml.safe_dump(doc, open("params.yaml", "w"), sort_keys=False)
PY
t() { local s=$(date +%s.%N); "$@" > log.txt 2>&1 || { tail -20 log.txt; exit 1; }; awk "BEGIN{printf \"%.1f\", $(date +%s.%N) - $s}"; }
T_PREP=$(t python3 -m stages.cli prepare)
T_TEACHER=$(t python3 -m stages.cli teacher)
T_BF16=$(t python3 -m stages.cli soft-labels --augmented '' --store .cache/bf16 --out data/logits)
T_FP32=$(t python3 -m stages.cli soft-labels --augmented '' --store .cache/fp32 --out data/logits_fp32 \
  --metrics metrics/soft_labels_fp32.json --set bf16=false)
T_DISTILL=$(t python3 -m stages.cli distill --name bert3_kd --augmented '')
T_TORCHRUN=$(t torchrun --standalone --nproc_per_node 1 -m stages.cli distill --name bert3_kd --augmented '' \
  --out models/students/bert3_kd_torchrun --metrics metrics/students/bert3_kd_torchrun.json \
  --live-dir dvclive/students/bert3_kd_torchrun)
mkdir -p "$OUT"
python3 - <<PY
import json, glob, numpy as np, torch
from safetensors.torch import load_file
def npz(d):
    z = np.load(glob.glob(f"{d}/*.npz")[0]); return z[[k for k in z.files if "logit" in k][0]]
a, b = npz("data/logits"), npz("data/logits_fp32")
w1 = load_file("models/students/bert3_kd/model.safetensors"); w2 = load_file("models/students/bert3_kd_torchrun/model.safetensors")
m = lambda p: json.load(open(p))
out = {"gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none", "torch": torch.__version__,
       "seconds": {"prepare": $T_PREP, "teacher": $T_TEACHER, "soft_labels_bf16": $T_BF16, "soft_labels_fp32": $T_FP32,
                   "distill": $T_DISTILL, "distill_torchrun_1": $T_TORCHRUN},
       "teacher": m("metrics/teacher.json"), "soft_labels_bf16": m("metrics/soft_labels.json"),
       "soft_labels_fp32": m("metrics/soft_labels_fp32.json"),
       "bf16_vs_fp32_logits": {"rows": len(a), "max_abs_diff": float(np.abs(a - b).max()),
                               "argmax_agreement": float((a.argmax(1) == b.argmax(1)).mean())},
       "student": m("metrics/students/bert3_kd.json"), "student_torchrun": m("metrics/students/bert3_kd_torchrun.json"),
       "torchrun_weights_equal": all(torch.equal(w1[k], w2[k]) for k in w1),
       "torchrun_max_weight_diff": max(float((w1[k].float() - w2[k].float()).abs().max()) for k in w1)}
json.dump(out, open("$OUT/gpu_check.json", "w"), indent=1)
print(json.dumps(out, indent=1))
PY
