import numpy as np
import pytest

from distillery.config import SoftLabelConfig
from distillery.errors import DistilleryError
from distillery.logits.run import soft_labels
from distillery.logits.artifact import Logits
from distillery.logits.fingerprint import teacher_fingerprint
from distillery.logits.label import label_texts
from distillery.logits.store import LogitStore
from distillery.teacher.train import load_teacher
from tests.conftest import conf

pytestmark = pytest.mark.needs_data


def test_second_run_with_one_new_text_labels_exactly_one(tmp_path, tiny_teacher):
    model, tok, _ = load_teacher(tiny_teacher)
    fp = teacher_fingerprint(tiny_teacher, 64)
    store = LogitStore(tmp_path / "store", fp, 2)
    ids = ["00000000000000a1", "00000000000000a2", "00000000000000a3"]
    texts = ["a fine film", "dreadful", "not bad at all"]
    s1 = label_texts(model, tok, ids, texts, None, store, 64, 16, bf16=False)
    assert (s1["labelled"], s1["reused"]) == (3, 0)
    again = LogitStore(tmp_path / "store", fp, 2)  # reopened from disk
    s2 = label_texts(model, tok, ids + ["00000000000000a4"], texts + ["great"], None, again, 64, 16, bf16=False)
    assert (s2["labelled"], s2["reused"]) == (1, 3)
    keys = np.array([int(i, 16) for i in ids], dtype=np.uint64)
    np.testing.assert_array_equal(again.get(keys), store.get(keys))


def test_stage_output_and_refusals(tmp_path, tiny_teacher, sst2_prepared, tiny_base):
    m = soft_labels(conf(SoftLabelConfig, batch_tokens=512), tiny_teacher, sst2_prepared, None, tmp_path / "logits",
                    tmp_path / "store", tmp_path / "m.json")
    assert m["texts"] == 400 and m["labelled"] == 400
    lg = Logits(tmp_path / "logits")
    assert lg.logits.dtype == np.float16 and lg.manifest["fingerprint"] == lg.check_teacher(tiny_teacher)
    # fp16 logits match a direct fp32 forward pass of the teacher
    from distillery.data.prepare import load_prepared
    from distillery.logits.label import run_teacher

    dev = load_prepared(sst2_prepared).dev
    model, tok, _ = load_teacher(tiny_teacher)
    direct = run_teacher(model, tok, dev["text_a"].tolist()[:20], None, 64, 100, bf16=False)
    np.testing.assert_allclose(lg.get(dev["id"].tolist()[:20], "dev"), direct, atol=2e-3)
    # a second run reuses everything
    m2 = soft_labels(conf(SoftLabelConfig, batch_tokens=512), tiny_teacher, sst2_prepared, None, tmp_path / "logits2",
                     tmp_path / "store", tmp_path / "m2.json")
    assert m2["labelled"] == 0 and m2["reused"] == 400
    # logits made by another teacher are refused
    from tests.conftest import make_tiny_teacher

    other = make_tiny_teacher(tmp_path / "other", num_labels=2)
    with pytest.raises(DistilleryError, match="logits were made by teacher fingerprint .* re-run `distillery soft-labels`"):
        lg.check_teacher(other)
    with pytest.raises(DistilleryError, match="no logits for 1 ids of the test set"):
        lg.get(["ffffffffffffffff"], "the test set")


KILL_SCRIPT = """
import os, signal, sys
import distillery.io as io
calls = {"n": 0}
real = os.replace
def dying_replace(src, dst):
    calls["n"] += 1
    if calls["n"] == 3:  # the third part is written to its temp file but never renamed
        os.kill(os.getpid(), signal.SIGKILL)
    return real(src, dst)
io.os.replace = dying_replace
from stages.cli import app
sys.argv = ["distillery"] + sys.argv[1:]
app()
"""


def _cli(tmp_path, *args, script=None, launcher=()):
    import os
    import subprocess
    import sys

    from tests.conftest import REPO, write_params

    if not (tmp_path / "params.yaml").is_file():
        write_params(tmp_path)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    cmd = [*launcher, "-c", script] if script else [*launcher, "-m", "stages.cli"]
    if not launcher:
        cmd = [sys.executable, *cmd]
    return subprocess.run([*cmd, *args], cwd=tmp_path, capture_output=True, text=True, env=env)


def _soft_label_args(teacher, prepared, out, store, metrics):
    return ["soft-labels", "--teacher", str(teacher), "--prepared", str(prepared), "--augmented", "",
            "--out", str(out), "--store", str(store), "--metrics", str(metrics), "--set", "batch_tokens=64",
            "--set", "checkpoint_every=40", "--set", "threads=1"]


def test_sigkill_then_resume_gives_identical_logits(tmp_path, tiny_teacher, sst2_prepared):
    import json

    ref = _cli(tmp_path, *_soft_label_args(tiny_teacher, sst2_prepared, tmp_path / "ref", tmp_path / "s1", tmp_path / "m1.json"))
    assert ref.returncode == 0, ref.stderr
    args = _soft_label_args(tiny_teacher, sst2_prepared, tmp_path / "out", tmp_path / "s2", tmp_path / "m2.json")
    killed = _cli(tmp_path, *args, script=KILL_SCRIPT)
    assert killed.returncode == -9
    assert not (tmp_path / "out").exists()  # nothing half-written
    parts = list((tmp_path / "s2").rglob("part-*.npz"))
    assert len(parts) == 2  # the two finished parts survive; the third's temp file is ignored
    assert len(list((tmp_path / "s2").rglob(".part-*.tmp"))) == 1  # the killed writer's scratch
    resumed = _cli(tmp_path, *args)
    assert resumed.returncode == 0, resumed.stderr
    assert not list((tmp_path / "s2").rglob("*.tmp"))  # removed by the next run: its process is gone
    m = json.loads((tmp_path / "m2.json").read_text())
    done = sum(len(np.load(p)["keys"]) for p in parts)
    assert done >= 80 and m["reused"] == done and m["labelled"] == 400 - done  # finished parts are not redone
    a, b = Logits(tmp_path / "ref"), Logits(tmp_path / "out")
    np.testing.assert_array_equal(a.keys, b.keys)
    np.testing.assert_array_equal(a.logits, b.logits)  # bit for bit


def test_two_processes_equal_one(tmp_path, tiny_teacher, sst2_prepared):
    import sys

    one = _cli(tmp_path, *_soft_label_args(tiny_teacher, sst2_prepared, tmp_path / "one", tmp_path / "s1", tmp_path / "m1.json"))
    assert one.returncode == 0, one.stderr
    launcher = (sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2")
    two = _cli(tmp_path, *_soft_label_args(tiny_teacher, sst2_prepared, tmp_path / "two", tmp_path / "s2", tmp_path / "m2.json"),
               launcher=launcher)
    assert two.returncode == 0, two.stderr[-3000:]
    a, b = Logits(tmp_path / "one"), Logits(tmp_path / "two")
    np.testing.assert_array_equal(a.keys, b.keys)
    np.testing.assert_array_equal(a.logits, b.logits)
    assert json_load(tmp_path / "m2.json")["processes"] == 2


def json_load(p):
    import json

    return json.loads(p.read_text())


def test_per_layer_cls_features_are_stored_like_logits(tmp_path, tiny_teacher, sst2_prepared):
    import torch

    from distillery.data.prepare import load_prepared

    cfg = conf(SoftLabelConfig, batch_tokens=512, features=("cls@1", "cls@2"))
    soft_labels(cfg, tiny_teacher, sst2_prepared, None, tmp_path / "out", tmp_path / "store", tmp_path / "m.json")
    lg = Logits(tmp_path / "out")
    assert [f["name"] for f in lg.manifest["features"]] == ["cls@1", "cls@2"]
    assert lg.manifest["features"][0]["dim"] == 32
    dev = load_prepared(sst2_prepared).dev
    model, tok, _ = load_teacher(tiny_teacher)
    texts = dev["text_a"].tolist()[:5]
    with torch.no_grad():
        hs = model(**tok(texts[:1], return_tensors="pt"), output_hidden_states=True).hidden_states
    got = lg.get(dev["id"].tolist()[:1], "dev", feature="cls@2")
    np.testing.assert_allclose(got[0], hs[2][0, 0].numpy(), atol=2e-2, rtol=1e-2)  # fp16 storage
    with pytest.raises(DistilleryError, match="no feature 'cls@0' stored"):
        lg.get(dev["id"].tolist()[:1], "dev", feature="cls@0")
    with pytest.raises(DistilleryError, match="param soft_labels.features: 'cls@9' is not one of cls@0 .. cls@2"):
        soft_labels(conf(SoftLabelConfig, features=("cls@9",)), tiny_teacher, sst2_prepared, None, tmp_path / "x",
                    tmp_path / "store", tmp_path / "m2.json")
    assert not (tmp_path / "x").exists()


def test_cls_only_fast_path_equals_full_forward(tiny_teacher):
    import torch

    from distillery.logits.fast_bert import cls_only_logits, supports_fast_path

    model, tok, _ = load_teacher(tiny_teacher)
    assert supports_fast_path(model)
    for pair in (False, True):
        enc = tok(["a fine film indeed"], ["it is"] if pair else None, return_tensors="pt")
        with torch.inference_mode():
            full = model(**enc).logits
            fast = cls_only_logits(model, enc["input_ids"], enc["token_type_ids"])
        torch.testing.assert_close(fast, full, atol=1e-5, rtol=1e-5)
