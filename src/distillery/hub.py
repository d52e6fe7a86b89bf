"""The Hugging Face Hub, asked only when a name is not a local folder: a quick reachability check first, so that
an offline machine gets one line naming the param in seconds instead of the hub client's retries."""

from pathlib import Path

from distillery.errors import DistilleryError


def hub_reachable(timeout: float = 3.0) -> bool:
    """Whether the Hugging Face Hub answers a TCP connection (HF_ENDPOINT where set); False at once when
    HF_HUB_OFFLINE is set. Checked before a download so that an offline machine gets one line in seconds,
    not the hub client's retries."""
    import os
    import socket
    from urllib.parse import urlparse

    if os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes"):
        return False
    url = urlparse(os.environ.get("HF_ENDPOINT") or "https://huggingface.co")
    try:
        socket.create_connection((url.hostname or "huggingface.co", url.port or 443), timeout=timeout).close()
        return True
    except OSError:
        return False


def require_hub(name: str, param: str, what: str = "model") -> None:
    """Refuse a Hub id that is neither cached here nor reachable, naming the param."""
    if Path(name).exists() or hub_reachable():
        return
    if what == "model":
        try:
            from huggingface_hub import try_to_load_from_cache

            if isinstance(try_to_load_from_cache(name, "config.json"), str):
                return  # in the local Hub cache: from_pretrained finds it offline
        except Exception:  # noqa: BLE001 - a malformed id: reported below
            pass
    raise DistilleryError(
        f"param {param}: {name!r} is not a local folder, not in the Hugging Face cache, and the Hub cannot be reached "
        f"from here; give a local folder{' (or the offline default all-MiniLM-L6-v2)' if what == 'model' else ''}, "
        "or run where the Hub is reachable")
