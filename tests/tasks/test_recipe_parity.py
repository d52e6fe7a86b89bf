"""Parity of the one `Recipe` with the loops it replaced (issue 32).

The MT-DNN student was trained by its own loop (`multitask/train.py`) until the recipe took it over; at the
commit that added the `multitask` task this test compared the two and found every weight equal. The former
loop is deleted now; `former_mtdnn_loop` below is its training part, line for line (I/O, logging and the
per-epoch dev score left out: they change no weight), so the recipe keeps training what it trained."""

import numpy as np
import pytest
import torch

from distillery.data.batching import text_lengths
from distillery.data.prepare import load_prepared
from distillery.losses import LOSSES, LossContext
from distillery.multitask.ensemble import Targets
from distillery.multitask.sampler import task_batches
from distillery.outputs import MAIN, ModelOutput
from distillery.students import load_student
from distillery.students.multitask import MultiTaskStudent, MultiTaskStudentConfig
from tests.multitask.test_multitask import mt_config, train, study  # noqa: F401  (the fixture)


def former_mtdnn_loop(root, base, epochs: int, bs: int = 16, lr: float = 1e-3, seed: int = 0, chunk: int = 5):
    """multitask/train.py's `train_multitask`, as it trained (students.mt: sst2 + rte, ce 0.5 + soft_ce 0.5)."""
    from transformers import AutoTokenizer

    tasks = {}
    for t in ("sst2", "rte"):
        prep = load_prepared(root / "prepared" / t)
        tg = Targets(root / "ensemble" / t, prep.task.name, prep.label_names)
        soft = tg.get(prep.train["id"].tolist(), t) if tg.has_teacher else None
        names = {"ce": 0.5, "soft_ce": 0.5} if soft is not None else {"ce": 1.0}
        losses = {n: (w, LOSSES.get(n)(LossContext(temperature=1.0))) for n, w in names.items()}
        tasks[t] = (prep, soft, torch.tensor(prep.train["label"].to_numpy(), dtype=torch.long), losses)
    torch.manual_seed(seed)
    tok = AutoTokenizer.from_pretrained(base)
    model = MultiTaskStudent.from_base(MultiTaskStudentConfig(heads={t: 2 for t in tasks}, num_layers=2,
                                                              input_names=list(tok.model_input_names)), str(base))
    rng = np.random.default_rng(seed)
    lengths = {t: text_lengths(v[0].train) for t, v in tasks.items()}
    total = len(task_batches(lengths, bs, np.random.default_rng(0), chunk)) * epochs
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.0)
    warm = int(0.1 * total)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: (s + 1) / max(warm, 1) if s < warm else max(0.0, (total - s) / max(total - warm, 1)))
    for _ in range(epochs):
        model.train()
        for task, idx in task_batches(lengths, bs, rng, chunk):
            prep, soft, labels, losses = tasks[task]
            frame = prep.train.iloc[idx]
            batch = model.collate(tok, frame["text_a"].tolist(), frame["text_b"].tolist() if prep.task.is_pair else None, 64)
            out = model(**batch, task=task)
            student = ModelOutput(logits={MAIN: out.logits[task]}, mask=out.mask)
            teacher = ModelOutput(logits={MAIN: torch.from_numpy(soft[idx])} if soft is not None else {})
            batch["labels"] = labels[torch.as_tensor(idx)]
            loss = sum(w * fn(student, teacher, batch) for w, fn in losses.values())
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            opt.step()
            sched.step()
    return model


@pytest.mark.needs_data
def test_multitask_student_through_the_recipe_equals_the_former_loop(study, tmp_path):  # noqa: F811
    root, base = study
    reference = former_mtdnn_loop(root, base, epochs=2).state_dict()
    train(mt_config(base_model=str(base), epochs=2), root, tmp_path / "new")
    model, _, _ = load_student(tmp_path / "new")
    got = model.state_dict()
    assert got.keys() == reference.keys()
    for k in got:
        assert torch.equal(got[k], reference[k]), k
