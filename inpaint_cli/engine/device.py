"""Where a network runs and at which precision: the device choice, CUDA's half-precision rule, and
the memory one pass may use there when no budget is given."""

from __future__ import annotations

import torch

from inpaint_cli.errors import UsageError
from inpaint_cli.options import Precision

PRECISIONS = tuple(p.value for p in Precision)
HALF_DTYPES = {"fp16": torch.float16, "bf16": torch.bfloat16}
"""The half-precision names of `--precision` and their compute dtypes."""

CPU_BUDGET_FRACTION = 0.5
"""Share of the available RAM one network pass may use when no budget is given."""
CUDA_BUDGET_FRACTION = 0.8
"""Share of the free CUDA memory one network pass may use when no budget is given."""


def select_device(spec: str = "auto") -> torch.device:
    """`auto` = CUDA if available, else Apple MPS, else CPU; `cuda:N` is checked to exist."""
    spec = spec.strip().lower()
    if spec == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        mps = getattr(torch.backends, "mps", None)
        return torch.device("mps" if mps is not None and mps.is_available() else "cpu")
    try:
        device = torch.device(spec)
    except RuntimeError:
        raise UsageError(f"unknown device {spec!r}", hint="use auto, cpu, cuda, cuda:N or mps") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise UsageError("CUDA is not available on this machine", hint="use --device cpu")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise UsageError(
                f"no CUDA device {device.index} (this machine has {torch.cuda.device_count()})",
                hint="use --device cuda:0",
            )
    elif device.type == "mps" and not torch.backends.mps.is_available():
        raise UsageError("Apple MPS is not available on this machine", hint="use --device cpu")
    elif device.type not in ("cpu", "cuda", "mps"):
        raise UsageError(f"unsupported device {spec!r}", hint="use auto, cpu, cuda, cuda:N or mps")
    return device


def select_precision(precision: str, device: torch.device) -> torch.dtype:
    """The compute dtype: `auto` is bf16 on CUDA where supported, else fp16, and fp32 on MPS and on
    CPU (where `Inpainter` may then measure bf16 and int8); int8 computes its convolutions in int8
    and everything else in fp32."""
    precision = getattr(precision, "value", precision)
    if precision not in PRECISIONS:
        raise UsageError(f"unknown precision {precision!r}", hint="use auto, fp32, fp16, bf16 or int8")
    if precision == "int8" and device.type != "cpu":
        raise UsageError("--precision int8 runs on the CPU only", hint="use fp16 or bf16 on a GPU")
    if precision == "auto":
        if device.type != "cuda":
            return torch.float32
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return HALF_DTYPES.get(precision, torch.float32)


def precision_name(dtype: torch.dtype) -> str:
    """fp32, fp16 or bf16: a compute dtype as `--precision` names it."""
    return {torch.float16: "fp16", torch.bfloat16: "bf16"}.get(dtype, "fp32")


def default_memory_budget(device: torch.device) -> int:
    """Bytes one network pass may use: a share of free CUDA memory or of available RAM."""
    if device.type == "cuda":
        free, _total = torch.cuda.mem_get_info(device)
        return int(free * CUDA_BUDGET_FRACTION)
    import psutil

    return int(psutil.virtual_memory().available * CPU_BUDGET_FRACTION)
