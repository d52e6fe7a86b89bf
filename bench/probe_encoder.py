"""How much of each task a frozen encoder already knows: a linear probe on its features.

    cd studies/mtdnn && python ../../bench/probe_encoder.py --tasks sst2 mrpc rte cola

Before fine-tuning ensembles on a small budget, ask whether the base model's representation separates the
task at all. For each prepared task folder (`data/prepared/<task>`, written by `distillery prepare`) the
encoder reads the training and dev texts once, without gradients; a logistic regression (scikit-learn,
three regularisation strengths) is fitted on the training features and scored on the dev set in the task's
own metric, for three readouts: the [CLS] vector, the pooler's output (what BertForSequenceClassification
feeds its classifier) and the mean over tokens (the readout sentence-embedding models are trained for).
The majority class's score is printed beside them: a probe near it means the features do not carry the
task, and a fine-tune has to build it from the training rows alone. Prints a table; the last line is
machine-readable.
"""

import argparse
import time
from pathlib import Path

import numpy as np
import torch


def features(model, tokenizer, frame, max_seq_len: int, batch_size: int) -> dict[str, np.ndarray]:
    """[CLS], pooler and masked-mean features of every row: tokenised once, batched by length (the project's
    one batcher), padded per batch."""
    from distillery.data.batching import length_batches
    from distillery.teacher.train import tokenize_frame

    enc = tokenize_frame(tokenizer, frame, max_seq_len)
    ids = enc["input_ids"]
    out = {"cls": [], "pooler": [], "mean": []}
    order = []
    for idx in length_batches(np.array([len(x) for x in ids]), batch_size=batch_size):
        batch = tokenizer.pad({k: [enc[k][j] for j in idx] for k in enc}, return_tensors="pt")
        with torch.inference_mode():
            o = model(**batch)
        mask = batch["attention_mask"].unsqueeze(-1).to(o.last_hidden_state.dtype)
        out["cls"].append(o.last_hidden_state[:, 0])
        out["pooler"].append(o.pooler_output if o.pooler_output is not None else o.last_hidden_state[:, 0])
        out["mean"].append((o.last_hidden_state * mask).sum(1) / mask.sum(1))
        order.extend(idx)
    inverse = np.argsort(order)
    return {k: torch.cat(v).float().numpy()[inverse] for k, v in out.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tasks", nargs="+", required=True, help="task folders under --prepared")
    ap.add_argument("--prepared", default="data/prepared")
    ap.add_argument("--model", default="all-MiniLM-L6-v2", help="a name distillery knows, a folder or a hub id")
    ap.add_argument("--max-seq-len", type=int, default=128)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    args = ap.parse_args()

    from sklearn.linear_model import LogisticRegression
    from transformers import AutoModel, AutoTokenizer

    from distillery.data.prepare import load_prepared
    from distillery.metrics import task_metric
    from distillery.teacher.models import resolve_model
    from distillery.teacher.train import quiet_loading

    if args.threads:
        torch.set_num_threads(args.threads)
    path = resolve_model(args.model)
    tokenizer = AutoTokenizer.from_pretrained(path)
    with quiet_loading():
        model = AutoModel.from_pretrained(path).eval()
    rows, best = [], {}
    for name in args.tasks:
        t0 = time.perf_counter()
        prep = load_prepared(Path(args.prepared) / name)
        ytr, ydv = prep.train["label"].to_numpy(), prep.dev["label"].to_numpy()
        ftr = features(model, tokenizer, prep.train, args.max_seq_len, args.batch_size)
        fdv = features(model, tokenizer, prep.dev, args.max_seq_len, args.batch_size)
        majority = np.full_like(ydv, np.bincount(ytr).argmax())
        scores = {"majority": 100 * task_metric(prep.task.metric, ydv, majority)}
        for readout in ftr:
            for c in (0.1, 1.0, 10.0):
                clf = LogisticRegression(C=c, max_iter=3000).fit(ftr[readout], ytr)
                scores[f"{readout} C={c:g}"] = 100 * task_metric(prep.task.metric, ydv, clf.predict(fdv[readout]))
        probe = max(v for k, v in scores.items() if k != "majority")
        best[name] = (probe, scores["majority"])
        rows.append((name, prep.task.metric, len(ytr), len(ydv), scores, time.perf_counter() - t0))

    keys = list(rows[0][4])
    print("| task | metric | train | dev | " + " | ".join(keys) + " | seconds |")
    print("|---|---|---|---|" + "---|" * len(keys) + "---|")
    for name, metric, ntr, ndv, scores, secs in rows:
        print(f"| {name} | {metric} | {ntr} | {ndv} | " + " | ".join(f"{scores[k]:.2f}" for k in keys)
              + f" | {secs:.0f} |")
    print(" ".join(f"{n}_best_probe={p:.2f} {n}_majority={m:.2f}" for n, (p, m) in best.items()))


if __name__ == "__main__":
    main()
