"""Parity: the MT-DNN student trained by the former multi-task loop (`multitask/train.py`) and by the one
`Recipe` with the `multitask` task ends with equal weights (issue 32, before the former loop is deleted)."""

import torch

from distillery.config import merge_student
from distillery.distill.recipe import Paths, distill
from distillery.students import load_student
from tests.multitask.test_multitask import DEFAULTS, mt_config, study  # noqa: F401  (the fixture)


def test_multitask_student_through_the_recipe_equals_the_former_loop(study, tmp_path):  # noqa: F811
    from distillery.multitask.train import train_multitask

    root, base = study
    old = train_multitask(mt_config(base_model=str(base), epochs=2), root / "prepared", root / "ensemble",
                          tmp_path / "old", tmp_path / "old.json", tmp_path / "old-live")
    common = {k: DEFAULTS[k] for k in ("epochs", "batch_size", "lr", "weight_decay", "warmup_ratio", "grad_clip",
                                       "temperature", "max_seq_len", "seed", "bucket_batches")}
    common |= {"epochs": 2, "optimizer": "adamw", "transfer_set": "train", "max_examples": 0, "task": "multitask"}
    group = {"model_args": {"base_model": str(base), "num_layers": 2, "freeze_embeddings": True, "dropout": 0.1}}
    cfg = merge_student("mt", {"model": "mtdnn", "tasks": ["sst2", "rte"], "losses": {"ce": 0.5, "soft_ce": 0.5}},
                        {"common": common, "mtdnn": group}, "mtdnn")
    new = distill(cfg, Paths(root / "prepared", None, root / "ensemble", None, tmp_path / "new", tmp_path / "new.json",
                             tmp_path / "new-live"))
    a, _, info_a = load_student(tmp_path / "old")
    b, _, info_b = load_student(tmp_path / "new")
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for k in sa:
        assert torch.equal(sa[k], sb[k]), k
    assert new["tasks"] == old["tasks"] and new["dev_average"] == old["dev_average"]
    assert info_a["tasks"] == info_b["tasks"]
