"""Where a model runs and in which precision: the device and dtype settings,
and the CPU's half-precision features that "auto" reads."""

import functools
from typing import Any

from ..errors import ModelLoadError


def resolve_device(device: str) -> str:
    """The torch device for a `device` setting.

    "auto" follows spaCy: after `spacy.require_gpu(i)` or a successful
    `spacy.prefer_gpu(i)` the model goes to that GPU; otherwise to the first
    CUDA GPU when torch sees one, else to the CPU.
    """
    import torch

    if device != "auto":
        return device
    try:
        from thinc.api import get_current_ops

        ops = get_current_ops()
        if type(ops).__name__ == "CupyOps":
            return f"cuda:{torch.cuda.current_device()}"
        if type(ops).__name__ == "MPSOps":
            return "mps"
    except ImportError:  # pragma: no cover - thinc comes with spaCy
        pass
    return "cuda" if torch.cuda.is_available() else "cpu"


DTYPES = ("auto", "float32", "float16", "bfloat16", "float64")


def check_dtype(dtype: str) -> None:
    """Refuse a dtype name torch does not have, before anything is loaded."""
    if dtype not in DTYPES:
        raise ValueError(f"Unknown dtype {dtype!r} (model.dtype): use one of {list(DTYPES)}")


def _torch_cpu_probe(name: str) -> bool:
    import torch

    # Private probes, so each is guarded: an older or newer torch answers "no".
    return bool(getattr(torch.cpu, name, lambda: False)())


def cpu_has_bf16() -> bool:
    """Whether this CPU computes in bfloat16 natively (AVX-512 BF16 or AMX):
    there bfloat16 matrix products are several times faster than float32."""
    return _torch_cpu_probe("_is_avx512_bf16_supported") or _torch_cpu_probe("_is_amx_tile_supported")


@functools.lru_cache(maxsize=1)
def cpu_has_fp16() -> bool:
    """Whether this CPU has float16 arithmetic (AVX-512 FP16, Sapphire Rapids
    and later); torch has no probe for it, so Linux's CPU flags are read (once
    a process)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            return any(line.startswith("flags") and "avx512_fp16" in line.split() for line in f)
    except OSError:
        return False


def resolve_dtype(dtype: str, device: str, half: str = "float16") -> Any:
    """The torch dtype for a `dtype` setting on `device`.

    "auto" picks the fastest precision that keeps answers (measured in
    docs/speed.md). On a CPU: bfloat16 with AMX (its matrix units); else
    float16 where the CPU has float16 arithmetic (AVX-512 FP16) and the model
    survives it (`half` is "float16": T5 overflows, its backend passes
    "float32"), which is faster than bfloat16 there and closer to float32;
    else bfloat16 where the CPU computes in it (AVX-512 BF16); else float32
    (emulated half precision is slower). On a GPU bfloat16 where supported,
    else `half`. Untested here on GPU. (Measured on both kinds of CPU on
    2026-12-01 with the default model: with AMX bfloat16 is 2.1x float16's
    speed; without it float16 is faster; both within noise of float32.)
    """
    import torch

    if dtype == "auto":
        if device == "cpu":
            if _torch_cpu_probe("_is_amx_tile_supported"):
                return torch.bfloat16
            if half == "float16" and cpu_has_fp16():
                return torch.float16
            return torch.bfloat16 if cpu_has_bf16() else torch.float32
        if device.startswith("cuda"):
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else getattr(torch, half)
        return "auto"
    try:
        return getattr(torch, dtype)
    except AttributeError:
        raise ModelLoadError(
            f"Unknown dtype '{dtype}' (model.dtype): use auto, float32, bfloat16 or float16."
        ) from None


# The environment variable that names the models (comma-separated, as written in
# model.name_or_path) whose own Python code the user has read and trusts: set when
# running, never in a config, and never applied to a pipeline folder.
