#!/bin/bash
# A small SST-2 pipeline run with the stage commands of checkout $1 into $2 (1,500 train / 300 dev, the real
# teacher 1 epoch in fp32, augment, soft-labels, bilstm_kd, bert3_kd, pkd_skip, export, evaluate). Run it for two
# checkouts (e.g. `git worktree add /tmp/old <rev>`) and compare the metrics and the teacher/logit hashes:
#   bash bench/parity_small_sst2.sh /tmp/old /tmp/par_old; bash bench/parity_small_sst2.sh $PWD /tmp/par_new
#   sha256sum /tmp/par_*/models/teacher/model.safetensors /tmp/par_*/data/logits/*.npz
set -e
REPO=$(realpath "$1"); OUT=$2
DATA=${DATA:-$(realpath "$(dirname "$0")/../../shared/data")}  # this checkout's ../shared/data
if [ -e "$OUT" ] && [ -n "$(ls -A "$OUT")" ]; then echo "$OUT exists and is not empty: give a new folder"; exit 2; fi
mkdir -p "$OUT"; cd "$OUT"
python - <<PY
import yaml
doc = yaml.safe_load(open("$REPO/params.yaml"))
doc["prepare"].update(data_dir="$DATA/glue/SST-2", max_train=1500, max_dev=300)
doc["teacher"].update(epochs=1, bf16=False)
doc["soft_labels"].update(bf16=False)
doc["augment"].update(n_iter=2)
doc["evaluate"].update(repeats=2, warmup=1, runtimes=["pytorch", "onnx"])
keep = {"bilstm_kd": {}, "bert3_kd": {"max_examples": 1500}, "pkd_skip": {"max_examples": 1500}}
doc["students"] = {k: {**doc["students"][k], **v} for k, v in keep.items()}
yaml.safe_dump(doc, open("params.yaml", "w"), sort_keys=False)
PY
export PYTHONPATH=$REPO:$REPO/src
for cmd in "prepare" "teacher" "augment --workers 1" "soft-labels" "distill --name bilstm_kd" "distill --name bert3_kd" "distill --name pkd_skip" "export --name bert3_kd" "evaluate"; do
  python -m stages.cli $cmd > /dev/null 2> err.txt || { tail -5 err.txt; exit 1; }
done
cat metrics/teacher.json metrics/students/*.json | grep -v seconds
