"""A student's model card in the Hugging Face Hub's format: a YAML header (what the Hub and model-card
tools read: library, task, base model, dataset, metrics, licence, tags, `model-index` with results),
then a short page for people: what the student is, how it was trained, its results beside the
teacher's, how to run it, and what to cite."""

from pathlib import Path

import yaml

from distillery.data.prepare import Prepared
from distillery.teacher.models import KNOWN_OFFLINE_MODELS

GLUE_HUB = "nyu-mll/glue"
GLUE_NAMES = {"sst2": "SST-2", "cola": "CoLA", "mrpc": "MRPC", "rte": "RTE"}


def _family(name: str):
    """The registered student family (its card facts: description, paper; transformers weights or not)."""
    from distillery.students import STUDENTS

    return STUDENTS.get(name) if name in STUDENTS else None


def _transformers(name: str) -> bool:
    return getattr(_family(name), "library", "onnx") == "transformers"


def hub_base_model(base: str | None) -> str | None:
    """The teacher's base checkpoint as a Hub id, or None for a local folder (the Hub wants an id)."""
    if not base:
        return None
    if base in KNOWN_OFFLINE_MODELS:
        return "sentence-transformers/all-MiniLM-L6-v2"
    if base.startswith((".", "/", "~")) or base.count("/") != 1:
        return None
    return base


def _task_name(prep: Prepared) -> str:
    source, task = prep.source, prep.task.name
    if source.startswith("file:"):  # the user's own files
        dev = (prep.files or {}).get("dev")
        scored = ("a share of it set aside as dev" if dev and "set aside" in dev else
                  f"dev: {Path(dev).name}" if dev else "its dev file")
        return f"{task} ({Path(source[5:]).name}; {scored})"
    return source[3:] if source.startswith("hf:") else f"GLUE {GLUE_NAMES.get(task, task)}"


def _dataset(prep: Prepared) -> dict:
    """The model-index dataset entry: GLUE on the Hub when prepared from GLUE, else the HF dataset."""
    source, task = prep.source, prep.task.name
    dev = prep.counts.get("dev", {})
    whole = not dev or dev.get("rows_kept") == dev.get("rows_read")
    name = _task_name(prep)
    if not whole:
        name += f" ({dev['rows_kept']} of {dev['rows_read']} validation rows)"
    if source.startswith("file:"):
        return {"name": name, "type": task, "split": "validation"}
    if source.startswith("hf:"):  # hf:<dataset>[:<config>]
        hub, _, config = source[3:].partition(":")
        return {"name": name, "type": hub, **({"config": config} if config else {}), "split": "validation"}
    return {"name": name, "type": GLUE_HUB, "config": task, "split": "validation"}


def header(sinfo: dict, prep: Prepared, export: dict, tinfo: dict, license: str) -> dict:
    family = sinfo["family"]
    metrics = [{"type": m, "value": round(float(export[prefix + m]), 4), "name": f"{m} ({label})"}
               for m in prep.task.metrics
               for label, prefix in (("PyTorch", "dev_"), ("ONNX Runtime", "onnx_dev_"), ("ONNX Runtime int8", "int8_dev_"))
               if prefix + m in export]
    data = _dataset(prep)
    head = {
        "library_name": "transformers" if _transformers(family) else "onnx",
        "pipeline_tag": "text-classification",
        "license": license,
        "language": ["en"],
        "datasets": [data["type"]],
        "metrics": list(prep.task.metrics),
        "tags": ["knowledge-distillation", "distillery", family, "onnx", *sorted(_losses(sinfo))],
        "model-index": [{"name": sinfo["name"], "results": [{
            "task": {"type": "text-classification", "name": "Text Classification"},
            "dataset": data,
            "metrics": metrics,
        }]}],
    }
    base = hub_base_model(tinfo.get("base_model"))
    if base:
        head = {"base_model": base, **head}
    return head


def _losses(sinfo: dict) -> set[str]:
    tr = sinfo.get("training", {})
    names = {k for k, w in tr.get("losses", {}).items() if w > 0}
    return names | {k for k, w in (tr.get("intermediate") or {}).get("losses", {}).items() if w > 0}


def _steps(sinfo: dict, transfer_rows: dict[str, int]) -> list[str]:
    """One line per training step: losses with weights, transfer set and its size, epochs, optimiser."""
    from distillery.losses import LOSSES

    tr = sinfo.get("training", {})
    steps = []
    if (tr.get("intermediate") or {}).get("progressive"):  # MobileBERT's schedule: a stage per layer
        steps.append((f"**progressive knowledge transfer**, a stage per layer (layer l on layer l's teacher maps, the "
                      f"layers below it frozen, the embeddings trained in the first), "
                      f"{sinfo.get('config', {}).get('num_layers')} stages, each", {**tr, "losses": {}, **tr["intermediate"]}))
    elif tr.get("intermediate"):
        steps.append(("**intermediate-layer distillation**:", {**tr, "losses": {}, **tr["intermediate"]}))
    steps.append(("**prediction-layer distillation**:" if steps else "**distillation**:", tr))
    lines = []
    for i, (what, st) in enumerate(steps, 1):
        rows = transfer_rows.get(st.get("transfer_set", ""))
        cap = st.get("max_examples") or 0
        size = min(cap, rows) if cap and rows else (cap or rows)
        kind = {"augmented": "the training split plus texts generated by Tang et al.'s rules",
                "train": "the training split"}.get(st.get("transfer_set"), st.get("transfer_set"))
        size_txt = f"{size:,} texts" if size else "size not recorded"
        epochs = st.get("epochs")
        lines.append(f"{i}. {what} {epochs} epoch{'' if epochs == 1 else 's'} on `{st.get('transfer_set')}` ({kind}; {size_txt}), "
                     f"batch {st.get('batch_size')}, {st.get('optimizer', 'adam')} at lr {st.get('lr')}, "
                     f"temperature {st.get('temperature')}. Losses (weight):")
        for name, w in st.get("losses", {}).items():
            if w > 0:
                lines.append(f"   - `{name}` ({w:g}): {_loss_text(LOSSES.get(name))}")
    return lines


def _loss_text(loss) -> str:
    """A loss's docstring summary on one line: its first paragraph, and the formula after it when
    the paragraph ends with a colon (the paper's name, then what it computes)."""
    paras = [" ".join(p.split()) for p in (getattr(loss, "__doc__", "") or "").strip().split("\n\n") if p.strip()]
    if not paras:
        return ""
    return f"{paras[0]} {paras[1]}" if paras[0].endswith(":") and len(paras) > 1 else paras[0]


def _architecture(sinfo: dict, export: dict) -> list[str]:
    family = sinfo["family"]
    c = sinfo.get("config", {})
    what = getattr(_family(family), "card", ("",))[0] or family
    params = export.get("params")
    lines = [f"- **Family**: `{family}`, {what}."]
    if params:
        lines.append(f"- **Size**: {params / 1e6:.2f}M parameters; ONNX {export.get('onnx_mb', 0):.1f} MB"
                     + (f", int8 ONNX {export['int8_mb']:.1f} MB" if "int8_mb" in export else "") + ".")
    if c.get("num_layers"):
        width, heads = c.get("hidden_size") or "the teacher's", c.get("num_heads") or "the teacher's"
        lines.append(f"- **Shape**: {c['num_layers']} layers of width {width}, {heads} heads.")
    elif c.get("hidden_size"):
        lines.append(f"- **Shape**: BiLSTM hidden {c['hidden_size']} per direction, MLP {c.get('mlp_size')}, "
                     f"embeddings {c.get('embed_dim')}.")
    if family == "fastbert":
        lines.append(f"- **Exits**: one branch (width {c.get('branch_width')}, {c.get('branch_heads')} heads) after "
                     "every layer but the last, whose own classifier is the last exit; a text leaves at the first "
                     f"exit whose normalised entropy is below `speed` (default {c.get('speed')}).")
    if c.get("init_from"):  # a general student's weights replace whatever the teacher gave
        lines.append(f"- **From a general student**: every embedding and layer weight of `{Path(c['init_from']).name}` "
                     "(task-agnostic distillation), the starting point of the task's distillation; the pooler and "
                     "classifier as without it.")
    elif c.get("init_layers"):
        lines.append(f"- **From the teacher**: embeddings and layers {', '.join(map(str, c['init_layers']))} "
                     "(1-based) were copied as the starting point.")
    elif c.get("init_embeddings") == "pca":
        lines.append("- **From the teacher**: word, position and segment embeddings, projected onto the student's "
                     "width by PCA; the rest starts random.")
    elif c.get("init_from_teacher"):
        lines.append("- **From the teacher**: its word embeddings" +
                     (" (kept frozen)." if c.get("freeze_embeddings") else " (fine-tuned)."))
    for key, label in (("layer_map", "Layer map (student -> teacher)"), ("patient_layers", "Patient teacher layers")):
        if c.get(key):
            lines.append(f"- **{label}**: {', '.join(map(str, c[key]))}.")
    return lines


def model_card(sinfo: dict, prep: Prepared, export: dict, tinfo: dict, license: str = "apache-2.0",
               transfer_rows: dict[str, int] | None = None) -> str:
    """The README.md of an export folder."""
    head = header(sinfo, prep, export, tinfo, license)
    base = tinfo.get("base_model") or "a BERT-family checkpoint"
    lines = [
        "---", yaml.safe_dump(head, sort_keys=False, allow_unicode=True).strip(), "---", "",
        f"# {sinfo['name']}",
        "",
        f"A {sinfo['family']} student distilled by distillery from a `{base}` teacher fine-tuned on "
        f"{_task_name(prep)} "
        + (f"(a regression: one output, the predicted {prep.label_names[0]})." if prep.task.regression
           else f"(labels: {', '.join(prep.label_names)}).")
        + (f" Teacher fingerprint `{sinfo['teacher_fingerprint']}`." if sinfo.get("teacher_fingerprint") else ""),
        "",
        "## What it is",
        "",
        *_architecture(sinfo, export),
        f"- **Input**: at most {sinfo.get('max_seq_len')} tokens of the teacher's tokenizer.",
        "",
        "## How it was trained",
        "",
        *_steps(sinfo, transfer_rows or {}),
        "",
        f"Seed {sinfo.get('training', {}).get('seed')}. The whole configuration is in `student.json`.",
        "",
        *_results(sinfo, prep.task.metric, export, prep.task.regression),
        "",
        *(_use_exits(sinfo) if sinfo["family"] == "fastbert"
          else _usage(sinfo["family"], export["inputs"], int(sinfo.get("max_seq_len") or 128))),
        *_label_a_file(sinfo["name"], prep.task.is_pair, prep.task.regression),
        *_citation(sinfo["family"]),
    ]
    return "\n".join(lines) + "\n"


def _label_a_file(name: str, pair: bool, regression: bool) -> list[str]:
    """The one command that labels a whole file with this export (`distillery predict`)."""
    cols = "--text-column sentence1 --text-pair-column sentence2" if pair else "--text-column text"
    what = "`prediction` (the score)" if regression else "`prediction` (the label) and `probability`"
    return ["", "## Label a file", "", "With distillery installed, one command (CSV, TSV, JSON Lines or Parquet; "
            "streamed, so any size; written only when every row is done):", "", "```bash",
            f"distillery predict reviews.csv --model exports/{name} --runtime int8 {cols}",
            "```", "", f"It writes `reviews.predictions.csv`: every row of the input, then {what}. "
            "With `--runtime onnx` it answers as the agreement above says."]


def _results(sinfo: dict, metric: str, export: dict, regression: bool = False) -> list[str]:
    """The student's figures in each runtime, beside the teacher's."""
    teacher_metric = sinfo.get("teacher_dev_metric")

    def agrees(a: float) -> str:
        return f"Pearson r {a:.4f} with PyTorch's scores" if regression else f"agrees with PyTorch on {a:.2%}"

    rows = [("PyTorch", export.get(f"dev_{metric}"), "")]
    rows.append(("ONNX Runtime", export.get(f"onnx_dev_{metric}"), agrees(export["onnx_agreement"])))
    if f"int8_dev_{metric}" in export:
        rows.append(("ONNX Runtime int8", export[f"int8_dev_{metric}"], agrees(export["int8_agreement"])))
    n = export.get("n_dev")
    lines = [f"## Results on the validation set{f' ({n} rows)' if n else ''}", "",
             f"| model | runtime | {metric} | |", "|---|---|---|---|"]
    if teacher_metric is not None:
        lines.append(f"| teacher | PyTorch | {teacher_metric:.4f} | |")
    for runtime, value, note in rows:
        notes = [note] if note else []
        if teacher_metric:
            notes.append(f"keeps {value / teacher_metric:.1%} of the teacher")
        lines.append(f"| {sinfo['name']} | {runtime} | {value:.4f} | {'; '.join(notes)} |")
    return lines


def _usage(family: str, inputs: list[str], max_len: int) -> list[str]:
    """How to run the export with ONNX Runtime, and (transformer students) with transformers. Texts are cut to
    the `max_len` tokens the model was trained and exported for (a longer input would fail in the graph)."""
    lengths = "lengths" in inputs
    lines = [
        "## Use",
        "",
        "```python",
        "import numpy as np, onnxruntime as ort",
        "from transformers import AutoTokenizer",
        "tok = AutoTokenizer.from_pretrained('.')",
        f"MAX_LEN = {max_len}  # tokens per text the model was trained and exported for: longer texts are cut",
        *(_use_lengths() if lengths else _use_hf(inputs)),
        "```",
        "",
        f"Inputs: {', '.join('`' + n + '`' for n in inputs)} (int64)"
        + ("; token ids without special tokens, padded with the pad id, and each row's length"
           if lengths else ", as the tokenizer returns them")
        + ". Output: `logits`, one row per input. `model.int8.onnx` takes the same inputs.",
    ]
    if _transformers(family):
        lines += ["", "In transformers (the weights are in this folder too):", "", "```python",
                  "from transformers import AutoModelForSequenceClassification, AutoTokenizer",
                  "model = AutoModelForSequenceClassification.from_pretrained('.')",
                  "enc = AutoTokenizer.from_pretrained('.')(['a gorgeous , witty film'], truncation=True, "
                  f"max_length={max_len}, return_tensors='pt')",
                  "logits = model(**enc).logits",
                  "```"]
    return lines


def _use_exits(sinfo: dict) -> list[str]:
    """FastBERT: the graphs per layer, driven by the loop that ships beside them (numpy + onnxruntime)."""
    speed = sinfo.get("config", {}).get("speed")
    return [
        "## Use",
        "",
        "One ONNX graph for the embeddings and one per layer with its exit (`layer{i}.onnx`: hidden states and "
        "mask in, hidden states and that exit's logits out), driven by `fastbert_runtime.py` (numpy and "
        "onnxruntime only; the same code that scored this model). Each layer runs only on the texts still in "
        "play; with `pool=True` the texts left over from several batches run together.",
        "",
        "```python",
        "import numpy as np",
        "from transformers import AutoTokenizer",
        "from fastbert_runtime import OnnxRunner, adaptive_predict",
        "tok = AutoTokenizer.from_pretrained('.')",
        "runner = OnnxRunner('.')  # OnnxRunner('.', int8=True) for the int8 graphs",
        "texts = ['a gorgeous , witty film', 'a dull , lifeless mess']",
        f"enc = tok(texts, padding=True, truncation=True, max_length={int(sinfo.get('max_seq_len') or 128)}, "
        "return_tensors='np')",
        f"logits, exit_layer = adaptive_predict(runner, [(np.arange(len(texts)), enc)], len(texts), speed={speed})",
        "```",
        "",
        f"`speed` in [0, 1] trades accuracy for time (0: every layer; {speed}: this model's default); "
        "`metrics/eval/exits.md` of the run that made it gives the curve.",
    ]


def _citation(family: str) -> list[str]:
    _, authors, title, arxiv = getattr(_family(family), "card", ("", "", "", ""))
    if not arxiv:
        return []
    surname, year = authors.split()[0], authors.split()[-1]
    return ["", "## Citation", "", f"The method: {authors}, *{title}* (arXiv:{arxiv}).", "", "```bibtex",
            f"@article{{{surname.lower()}{year},", f"  title = {{{title}}},", f"  author = {{{surname} and others}},",
            f"  journal = {{arXiv preprint arXiv:{arxiv}}},", f"  year = {{{year}}}", "}", "```"]


def _use_lengths() -> list[str]:
    return [
        "ids = tok('a gorgeous , witty film', add_special_tokens=False)['input_ids'][:MAX_LEN]",
        "sess = ort.InferenceSession('model.onnx')",
        "feeds = {'input_ids': np.array([ids], dtype=np.int64), 'lengths': np.array([len(ids)], dtype=np.int64)}",
        "logits = sess.run(['logits'], feeds)[0]",
    ]


def _use_hf(names: list[str]) -> list[str]:
    return [
        "enc = tok(['a gorgeous , witty film'], truncation=True, max_length=MAX_LEN, return_tensors='np')",
        "sess = ort.InferenceSession('model.onnx')",
        f"logits = sess.run(['logits'], {{k: enc[k].astype(np.int64) for k in {names!r}}})[0]",
    ]


def read_header(text: str) -> dict:
    """The YAML header of a model card (what the Hub reads)."""
    if not text.startswith("---\n"):
        raise ValueError("a model card starts with a '---' line")
    return yaml.safe_load(text[4:text.index("\n---\n", 4)])



def general_card(sinfo: dict, corpus: dict, metrics: dict, teacher_accuracy: float | None,
                 license: str = "apache-2.0") -> str:
    """The README.md of a general (task-agnostic) student's folder: a Hub header (fill-mask when its masked-LM
    head was trained, else feature-extraction), what it is, how it was distilled, its held-out masked-token
    accuracy beside the teacher's, how to load it and start a task student from it, and what to cite."""
    family, base = sinfo["family"], corpus.get("tokenizer")
    acc = metrics.get("dev_masked_token_accuracy") if metrics.get("head_trained") else None
    results = [{"type": "accuracy", "value": round(float(acc), 4), "name": "masked-token accuracy (held out)"}] \
        if acc is not None else []
    head = {**({"base_model": hub_base_model(base)} if hub_base_model(base) else {}),
            "library_name": "transformers", "pipeline_tag": "fill-mask" if acc is not None else "feature-extraction",
            "license": license, "language": ["en"],
            "tags": ["knowledge-distillation", "distillery", "general-distillation", family],
            **({"model-index": [{"name": sinfo["name"], "results": [{
                "task": {"type": "fill-mask", "name": "Masked language modelling"},
                "dataset": {"name": f"held-out text ({Path(str(corpus.get('heldout'))).name})", "type": "text"},
                "metrics": results}]}]} if results else {})}
    c, what = sinfo.get("config", {}), getattr(_family(family), "card", ("",))[0] or family
    steps = [line.replace("the training split", "the packed corpus").replace(" texts)", " rows)")
             for line in _steps(sinfo, {"train": int(corpus.get("train_rows") or 0)})]
    lines = [
        "---", yaml.safe_dump(head, sort_keys=False, allow_unicode=True).strip(), "---", "",
        f"# {sinfo['name']}", "",
        f"A general (task-agnostic) {family} student distilled by distillery from a masked-LM teacher built on "
        f"`{base}`, on {corpus.get('train_tokens', 0):,} tokens ({corpus.get('documents', 0):,} documents of "
        f"`{corpus.get('source')}`, packed into rows of {corpus.get('seq_len')} tokens). Fine-tune it, or distil a "
        "task student from it, rather than use it as it is.", "",
        "## What it is", "",
        f"- **Family**: `{family}`, {what}.",
        f"- **Size**: {metrics.get('params', 0) / 1e6:.2f}M parameters; {c.get('num_layers')} layer(s) of width "
        f"{c.get('hidden_size') or 'the teacher'}.",
        f"- **Masked-LM head**: {'trained' if acc is not None else 'not trained by its last step (the encoder is the product)'}.",
        "", "## How it was distilled", "", *steps, "",
        f"Seed {sinfo.get('training', {}).get('seed')}; {metrics.get('tokens_per_second', 0):,.0f} tokens per second "
        f"with the teacher run alongside ({metrics.get('processes', 1)} process(es)). The whole configuration is in "
        "`student.json`.", "",
        "## Results", "",
        "| model | held-out masked-token accuracy |", "|---|---|",
        f"| teacher | {teacher_accuracy:.4f} |" if teacher_accuracy is not None else "| teacher | not measured |",
        f"| {sinfo['name']} | {acc:.4f} |" if acc is not None else f"| {sinfo['name']} | - (no trained head) |", "",
        "Both on the same held-out rows and masks (BERT's rule, 15% of tokens).", "",
        "## Use", "", "```python",
        "from transformers import AutoModel, AutoModelForMaskedLM, AutoTokenizer",
        "tok = AutoTokenizer.from_pretrained('.')",
        "encoder = AutoModel.from_pretrained('.')",
        *(["mlm = AutoModelForMaskedLM.from_pretrained('.')"] if acc is not None else []),
        "```", "",
        "As the start of a task student in distillery's params (the same family):", "", "```yaml",
        f"students:\n  my_student:\n    model: {family}\n    model_args: {{init_from: <this folder>}}", "```",
        *_citation(family),
    ]
    return "\n".join(lines) + "\n"
