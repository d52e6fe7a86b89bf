"""Parallel text: validation (file and line), the prepare command, Multi30k's real sample."""

import subprocess
import sys

import numpy as np
import pytest

from distillery.errors import DistilleryError
from distillery.generation.config import (
    GenPrepareConfig,
)
from distillery.generation.data import read_parallel
from tests.generation.helpers import (
    MULTI30K,
    REPO,
    make_tok,
    needs_data,
    write_pair,
)


def test_empty_and_overlong_pairs_name_file_and_line(tmp_path):
    tok = make_tok()
    write_pair(tmp_path, ["Ein Hund.", "", "Eine Katze."], ["A dog.", "Nothing.", "A cat."])
    with pytest.raises(DistilleryError, match=r"train\.de:2: empty sentence"):
        read_parallel(tmp_path / "train.de", tmp_path / "train.en", tok, 50, 50)
    write_pair(tmp_path, ["Ein Hund.", "Eine Katze."], ["A dog.", ""])
    with pytest.raises(DistilleryError, match=r"train\.en:2: empty sentence"):
        read_parallel(tmp_path / "train.de", tmp_path / "train.en", tok, 50, 50)
    write_pair(tmp_path, ["Ein Hund.", "Ein sehr langer Satz über einen Hund."], ["A dog.", "A dog."])
    with pytest.raises(DistilleryError, match=r"train\.de:2: \d+ tokens, more than prepare\.max_src_len = 4"):
        read_parallel(tmp_path / "train.de", tmp_path / "train.en", tok, 4, 50)
    write_pair(tmp_path, ["Ein Hund.", "Eine Katze."], ["A dog."])
    with pytest.raises(DistilleryError, match=r"train\.en: 1 lines, but .*train\.de has 2"):
        read_parallel(tmp_path / "train.de", tmp_path / "train.en", tok, 50, 50)


def test_prepare_cli_reports_one_line_and_writes_nothing(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    for stem in ("train", "val", "test"):
        write_pair(data, ["Ein Hund läuft.", "Eine Katze schläft."], ["A dog runs.", "A cat sleeps."], stem)
    write_pair(data, ["Ein Hund läuft.", "Eine Katze schläft."], ["A dog runs.", ""], "val")
    (tmp_path / "params.yaml").write_text(
        "prepare: {data_dir: data, src_lang: de, tgt_lang: en, splits: {train: train, dev: val, test: test},\n"
        "  tokenizer: all-MiniLM-L6-v2, max_src_len: 32, max_tgt_len: 32, max_train: 0, max_eval: 0, seed: 0}\n"
        "distill: {common: {task: seq2seq}}\n")  # a seq2seq study: `distillery prepare` reads parallel text
    r = subprocess.run([sys.executable, "-m", "stages.cli", "prepare"], cwd=tmp_path, capture_output=True, text=True,
                       env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)})
    assert r.returncode == 2
    assert r.stderr.strip().splitlines()[-1] == ("error: data/val.en:2: empty sentence; remove the pair (the same line "
                                                  "of both files) or fill it in")
    assert not (tmp_path / "data" / "prepared").exists() and not (tmp_path / "data" / "prepared").exists()
    r = subprocess.run([sys.executable, "-m", "stages.cli", "prepare", "--set", "max_src_len=0"], cwd=tmp_path,
                       capture_output=True, text=True, env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin",
                                                            "HOME": str(tmp_path)})
    assert r.returncode == 2 and "param prepare.max_src_len: must be in 1..1000, got 0" in r.stderr


@needs_data
def test_multi30k_sample_reads_and_fits_the_default_limits():
    import yaml

    params = yaml.safe_load((REPO / "studies" / "cmlm" / "params.yaml").read_text())["prepare"]
    cfg = GenPrepareConfig(**{**params, "data_dir": str(MULTI30K)})
    frame = read_parallel(MULTI30K / "val.de", MULTI30K / "val.en", make_tok(), cfg.max_src_len, cfg.max_tgt_len)
    assert len(frame) == 1014 and frame["id"].is_unique and (frame["line"] == np.arange(1, 1015)).all()


# --- the teacher's soft labels: store, artifact, resume ------------------------------------------------------
