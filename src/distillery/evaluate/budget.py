"""The pick under a latency budget: of the students that run within `max_ms_per_text` (at `batch_size`, in
`runtime`, on the machine that timed them) and keep at least `min_retention` of the teacher's main metric, the
one with the highest main metric in that runtime, then the lowest latency, then the first in the table's order.

A pure function of the evaluate table (`tradeoff.csv`: one row per model and runtime), so `evaluate` marks it in
its outputs and `distillery pick` answers another budget from a saved table without timing anything again."""

from dataclasses import asdict, dataclass

import pandas as pd

from distillery.errors import DistilleryError

RUNTIME_LABELS = {"pytorch": "PyTorch", "onnx": "ONNX", "int8": "int8 ONNX"}


@dataclass(frozen=True)
class Budget:
    max_ms_per_text: float
    batch_size: int = 1
    runtime: str = "any"  # pytorch, onnx, int8, or any: each student in every runtime it ships in
    min_retention: float = 0.0

    def describe(self, metric: str) -> str:
        where = "any runtime" if self.runtime == "any" else RUNTIME_LABELS[self.runtime]
        keep = f", keeping >= {self.min_retention:.0%} of the teacher's {metric}" if self.min_retention else ""
        return f"<= {self.max_ms_per_text:g} ms per text at batch {self.batch_size} in {where}{keep}"


def candidates(table: pd.DataFrame, budget: Budget) -> pd.DataFrame:
    """The students' rows in the budget's runtime(s), with `ms_per_text` at its batch size, in table order."""
    col = f"latency_bs{budget.batch_size}_ms"
    if col not in table.columns:
        timed = sorted(int(c.removeprefix("latency_bs").removesuffix("_ms")) for c in table.columns
                       if c.startswith("latency_bs"))
        raise DistilleryError(f"budget batch_size {budget.batch_size}: not timed (the table has {timed}); use one of those "
                              "(evaluate.budget.batch_size, or pick --batch-size)")
    rows = table[(table["model"] != "teacher") & ((table["runtime"] == budget.runtime) | (budget.runtime == "any"))]
    rows = rows.assign(ms_per_text=rows[col] / budget.batch_size, order=range(len(rows)))
    return rows[rows["ms_per_text"].notna()]


def pick(table: pd.DataFrame, budget: Budget, metric: str) -> dict:
    """The pick (`student`, `runtime`, its figures), or `student: None` with why and by how much the fastest misses."""
    rows = candidates(table, budget)
    base = {"budget": asdict(budget)}
    if rows.empty:
        return {**base, "student": None, "why": f"no student is timed in {budget.runtime}"}
    fast = rows[rows["ms_per_text"] <= budget.max_ms_per_text]
    ok = fast[fast["retention"] >= budget.min_retention]
    if not ok.empty:
        best = ok.sort_values(["score", "ms_per_text", "order"], ascending=[False, True, True]).iloc[0]
        return {**base, "student": best["model"], "runtime": best["runtime"], "ms_per_text": round(best["ms_per_text"], 3),
                metric: round(float(best["score"]), 4), "retention": round(float(best["retention"]), 4),
                "meeting_budget": int(ok["model"].nunique())}
    fastest = rows.sort_values(["ms_per_text", "order"]).iloc[0]
    miss = fastest["ms_per_text"] - budget.max_ms_per_text
    if miss > 0:
        why = (f"no student runs within {budget.max_ms_per_text:g} ms per text: the fastest, {fastest['model']} "
               f"({RUNTIME_LABELS[fastest['runtime']]}), takes {fastest['ms_per_text']:.2f} ms, "
               f"{miss:.2f} ms ({miss / budget.max_ms_per_text:.0%}) over")
        return {**base, "student": None, "why": why, "fastest": fastest["model"],
                "fastest_ms_per_text": round(float(fastest["ms_per_text"]), 3), "misses_by_ms": round(float(miss), 3)}
    kept = fast.sort_values(["retention", "order"], ascending=[False, True]).iloc[0]
    why = (f"{fast['model'].nunique()} student(s) run within {budget.max_ms_per_text:g} ms per text but none keeps "
           f"{budget.min_retention:.0%}: the best of them, {kept['model']} ({RUNTIME_LABELS[kept['runtime']]}), keeps "
           f"{kept['retention']:.1%}")
    return {**base, "student": None, "why": why, "best_retention": round(float(kept["retention"]), 4)}


def describe_pick(result: dict, metric: str) -> str:
    """One line for the table and the console."""
    budget = Budget(**result["budget"])
    if result["student"] is None:
        return f"Pick for the budget ({budget.describe(metric)}): none; {result['why']}."
    return (f"Pick for the budget ({budget.describe(metric)}): **{result['student']}** in "
            f"{RUNTIME_LABELS[result['runtime']]}, {result['ms_per_text']:.2f} ms per text, {metric} "
            f"{result[metric]:.4f} ({result['retention']:.1%} of the teacher); {result['meeting_budget']} "
            f"student(s) meet the budget.")
