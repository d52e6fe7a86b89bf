"""params.yaml is the one source of the pipeline's defaults, and every shipped study config is valid."""

from dataclasses import MISSING, fields

import pytest

from distillery.config import (
    AugmentConfig,
    EvaluateConfig,
    ExportConfig,
    PrepareConfig,
    SoftLabelConfig,
    StudentConfig,
    TeacherConfig,
    from_section,
)
from tests.conftest import REPO, make_student, repo_params

STAGES = [(PrepareConfig, "prepare"), (TeacherConfig, "teacher"), (AugmentConfig, "augment"),
          (SoftLabelConfig, "soft_labels"), (ExportConfig, "export"), (EvaluateConfig, "evaluate")]


@pytest.mark.parametrize("cls,section", STAGES)
def test_code_has_no_default_that_params_yaml_sets(cls, section):
    params = repo_params()[section]
    known = {f.name: f for f in fields(cls)}
    assert set(params) <= set(known), f"params.yaml {section} has keys the config lacks"
    optional = {"budget"} if section == "evaluate" else set()  # no pick unless asked: the studies' files have none
    if section == "teacher":  # a study written before the plateau settings and threads trains as it did
        optional = {"max_steps", "min_gain", "patience", "evals_per_epoch", "threads"}
    for key in set(params) - optional:
        f = known[key]
        assert f.default is MISSING and f.default_factory is MISSING, f"{cls.__name__}.{key} has a default"
    from_section(cls, section, params)  # and the shipped values pass validation


def test_student_fields_have_no_defaults_and_every_shipped_student_builds():
    optional = {f.name for f in fields(StudentConfig) if f.default is not MISSING or f.default_factory is not MISSING}
    # tasks, loss_args: some tasks only; the plateau settings and threads: a study written before them trains as it did
    assert optional == {"intermediate", "tasks", "loss_args", "max_steps", "min_gain", "patience", "evals_per_epoch",
                        "threads"}
    p = repo_params()
    for name, block in p["students"].items():
        cfg = make_student(name, **block)
        assert cfg.losses == block["losses"]
    assert make_student("x", model="bert", losses={"ce": 1}).grad_clip == p["distill"]["transformer"]["grad_clip"]


def test_params_yaml_is_short():
    assert (REPO / "params.yaml").stat().st_size < 8 * 1024


def test_every_block_of_the_mtdnn_study_params_is_valid():
    """studies/mtdnn/params.yaml: every task, member, student and stage section builds its config."""
    import yaml

    from distillery.config import MtEvaluateConfig, members_config
    from distillery.distill.recipe import student_config

    p = yaml.safe_load((REPO / "studies" / "mtdnn" / "params.yaml").read_text(encoding="utf-8"))
    for name, block in p["tasks"].items():
        assert from_section(PrepareConfig, f"tasks.{name}", block).task == name
    members = members_config(p["members"])
    assert {m.task for m in members} == set(p["tasks"])
    assert all(sum(m.task == t for m in members) == 3 for t in p["tasks"])  # K = 3 per task
    for m in members:
        from_section(TeacherConfig, "teacher", {**p["teacher"], "seed": m.seed, "dropout": m.dropout, "epochs": m.epochs})
    from_section(SoftLabelConfig, "soft_labels", p["soft_labels"])
    from_section(MtEvaluateConfig, "evaluate", p["evaluate"])
    from_section(ExportConfig, "export", p["export"])
    for name, block in p["students"].items():
        cfg = student_config(name, block, p["distill"])
        assert cfg.tasks == tuple(p["tasks"]) and cfg.task == "multitask"
    for task in p["tasks"]:
        assert student_config(f"single_{task}", {**p["single_task"], "tasks": [task]}, p["distill"]).tasks == (task,)


def test_every_block_of_the_cmlm_study_params_is_valid():
    """studies/cmlm/params.yaml: every stage section and every student builds its config."""
    import yaml

    from distillery.generation.config import (
        CmlmTeacherConfig,
        GenEvaluateConfig,
        GenPrepareConfig,
        GenSoftLabelConfig,
    )
    from distillery.distill.recipe import student_config

    p = yaml.safe_load((REPO / "studies" / "cmlm" / "params.yaml").read_text(encoding="utf-8"))
    prep = from_section(GenPrepareConfig, "prepare", p["prepare"])
    assert (prep.src_lang, prep.tgt_lang) == ("de", "en")
    from_section(CmlmTeacherConfig, "teacher", p["teacher"])
    soft = from_section(GenSoftLabelConfig, "soft_labels", p["soft_labels"])
    from_section(ExportConfig, "export", p["export"])
    from_section(GenEvaluateConfig, "evaluate", p["evaluate"])
    students = {name: student_config(name, block, p["distill"]) for name, block in p["students"].items()}
    assert all(s.task == "seq2seq" and s.loss_args["top_k"] <= soft.top_k for s in students.values())
    assert any("topk_kd" not in s.losses for s in students.values())  # the likelihood-only baseline is in the run
    assert {s.loss_args["top_k"] for s in students.values() if "topk_kd" in s.losses} >= {1, 8}  # the k ablation


def test_every_block_of_the_general_study_params_is_valid():
    """studies/general/params.yaml: the corpus, the masked-LM teacher and every general student build their configs."""
    import yaml

    from distillery.data.corpus import CorpusConfig
    from distillery.distill.recipe import student_config
    from distillery.teacher.mlm import MlmTeacherConfig

    p = yaml.safe_load((REPO / "studies" / "general" / "params.yaml").read_text(encoding="utf-8"))
    assert from_section(CorpusConfig, "prepare", p["prepare"]).seq_len <= 512
    assert from_section(MlmTeacherConfig, "teacher", p["teacher"]).train in ("head", "all", "none")
    students = {name: student_config(name, block, p["distill"]) for name, block in p["students"].items()}
    assert students and all(s.task == "mlm" for s in students.values())
    assert students["distilbert"].losses == {"kl": 5.0, "ce": 2.0, "cosine_hidden": 1.0}  # Sanh et al.'s weights
