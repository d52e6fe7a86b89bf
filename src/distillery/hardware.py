"""What the hardware can do, detected (never assumed): one probe for bf16, used by every stage."""

import torch


def bf16_supported(device_type: str = "cpu") -> bool:
    """bf16 autocast pays off: a CUDA GPU with bf16, or a CPU whose oneDNN has native bf16 (AVX-512 BF16 / AMX).
    On CPUs without it (e.g. AMD EPYC without AVX-512) a bf16 matmul is far slower than fp32."""
    if device_type == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    try:
        return bool(torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def precision(bf16: bool, device_type: str = "cpu") -> str:
    """The precision a run with `bf16` requested actually uses here: "bf16" or "fp32"."""
    return "bf16" if bf16 and bf16_supported(device_type) else "fp32"
