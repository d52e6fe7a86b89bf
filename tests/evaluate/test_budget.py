"""The pick under a latency budget, on hand-made tables: ties, retention, runtimes, none within the budget; the
budget's params; `evaluate` marking its pick; `distillery pick` on a saved table."""

import json
import subprocess
import sys

import pandas as pd
import pytest

from distillery.config import EvaluateConfig
from distillery.errors import DistilleryError
from distillery.evaluate.budget import Budget, describe_pick, pick
from tests.conftest import REPO, conf

ROWS = [  # model, runtime, score, retention, ms at bs1, ms at bs32
    ("teacher", "pytorch", 0.90, 1.000, 20.0, 400.0),
    ("teacher", "int8", 0.90, 1.000, 9.0, 300.0),
    ("fast", "pytorch", 0.80, 0.889, 2.0, 40.0),
    ("fast", "int8", 0.81, 0.900, 1.0, 30.0),
    ("mid_a", "pytorch", 0.88, 0.978, 6.0, 160.0),
    ("mid_a", "int8", 0.88, 0.978, 4.0, 128.0),
    ("mid_b", "pytorch", 0.88, 0.978, 5.0, 150.0),  # ties mid_a's score: the faster one wins
    ("mid_b", "int8", 0.87, 0.967, 3.5, 120.0),
    ("big", "pytorch", 0.895, 0.994, 12.0, 320.0),
]
TABLE = pd.DataFrame(ROWS, columns=["model", "runtime", "score", "retention", "latency_bs1_ms", "latency_bs32_ms"])


def test_highest_metric_within_the_budget_then_lowest_latency():
    r = pick(TABLE, Budget(max_ms_per_text=5.0), "accuracy")
    assert (r["student"], r["runtime"], r["ms_per_text"]) == ("mid_a", "int8", 4.0)  # 0.88 at 4 ms beats 0.88 at 5
    assert r["accuracy"] == 0.88 and r["meeting_budget"] == 3
    assert pick(TABLE, Budget(max_ms_per_text=5.0, runtime="pytorch"), "accuracy")["student"] == "mid_b"
    assert pick(TABLE, Budget(max_ms_per_text=100.0), "accuracy")["student"] == "big"  # never the teacher
    assert pick(TABLE, Budget(max_ms_per_text=3.9), "accuracy")["student"] == "mid_b"  # int8, 3.5 ms, 0.87


def test_exact_tie_keeps_the_table_order():
    t = pd.concat([TABLE, TABLE[TABLE.model == "mid_a"].assign(model="mid_c")], ignore_index=True)
    assert pick(t, Budget(max_ms_per_text=4.0, runtime="int8"), "accuracy")["student"] == "mid_a"


def test_batch_size_divides_the_call_and_retention_filters():
    r = pick(TABLE, Budget(max_ms_per_text=4.0, batch_size=32), "accuracy")  # 128 ms / 32 texts = 4 ms
    assert (r["student"], r["runtime"], r["ms_per_text"]) == ("mid_a", "int8", 4.0)
    assert pick(TABLE, Budget(max_ms_per_text=2.0, min_retention=0.9), "accuracy")["student"] == "fast"
    with pytest.raises(DistilleryError, match=r"budget batch_size 8: not timed \(the table has \[1, 32\]\)"):
        pick(TABLE, Budget(max_ms_per_text=1.0, batch_size=8), "accuracy")


def test_none_within_the_budget_says_by_how_much_the_fastest_misses():
    r = pick(TABLE, Budget(max_ms_per_text=0.8), "accuracy")
    assert r["student"] is None and r["fastest"] == "fast" and r["misses_by_ms"] == pytest.approx(0.2)
    assert "the fastest, fast (int8 ONNX), takes 1.00 ms, 0.20 ms (25%) over" in describe_pick(r, "accuracy")
    r = pick(TABLE, Budget(max_ms_per_text=2.0, min_retention=0.95), "accuracy")
    assert r["student"] is None and r["best_retention"] == 0.9
    assert "none keeps 95%: the best of them, fast (int8 ONNX), keeps 90.0%" in r["why"]


@pytest.mark.parametrize("budget,msg", [
    ({"batch_size": 1}, "evaluate.budget.max_ms_per_text: missing"),
    ({"max_ms_per_text": 0}, r"evaluate.budget.max_ms_per_text: must be > 0"),
    ({"max_ms_per_text": 5, "batch_size": 8}, r"evaluate.budget.batch_size: 8 is not timed; use one of evaluate.batch_sizes \[1, 32\]"),
    ({"max_ms_per_text": 5, "runtime": "tensorrt"}, "evaluate.budget.runtime: 'tensorrt' is not evaluated"),
    ({"max_ms_per_text": 5, "min_retention": 1.5}, r"evaluate.budget.min_retention: must be in \[0, 1\]"),
    ({"max_ms_per_text": 5, "max_ms": 5}, "evaluate.budget.max_ms: unknown setting"),
])
def test_budget_params_are_checked(budget, msg):
    with pytest.raises(DistilleryError, match=msg):
        conf(EvaluateConfig, budget=budget)


def test_pick_command_answers_another_budget_from_a_saved_table(tmp_path):
    TABLE.to_csv(tmp_path / "tradeoff.csv", index=False)
    (tmp_path / "summary.json").write_text(json.dumps({"metric": "accuracy"}))

    def run(*args):
        return subprocess.run([sys.executable, "-m", "stages.cli", "pick", "--table", str(tmp_path / "tradeoff.csv"),
                               *args], cwd=REPO, capture_output=True, text=True, timeout=120)

    p = run("--max-ms-per-text", "5")
    assert p.returncode == 0, p.stderr
    assert p.stdout.splitlines()[-1].startswith("Pick for the budget (<= 5 ms per text at batch 1 in any runtime, "
                                                "keeping >= 97% of the teacher's accuracy): mid_a in int8 ONNX")
    p = run("--max-ms-per-text", "0.5", "--min-retention", "0")
    assert p.returncode == 0 and "none; no student runs within 0.5 ms per text" in p.stdout
    p = run("--max-ms-per-text", "-1")
    assert p.returncode == 2 and p.stderr.strip() == "error: param --max-ms-per-text: must be > 0, got -1.0"
