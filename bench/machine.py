"""What a result was measured on: CPU model and cores, GPU (if any), torch."""

from __future__ import annotations

import os
import platform
import re

import msgspec


class Machine(msgspec.Struct, kw_only=True):
    cpu: str
    cores: int
    gpu: str | None
    torch: str
    # T3's and the flow's dtype as CHATTERBOX_DTYPE resolves here (auto: bfloat16 on CUDA, AMX or AVX512-BF16).
    dtype: str | None = None  # None in results made before it was recorded

    def slug(self) -> str:
        """A short file-name-safe name: the GPU's, else `cpu<cores>`."""
        name = self.gpu or f"cpu{self.cores}"
        return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")

    def describe(self) -> str:
        gpu = f", GPU {self.gpu}" if self.gpu else ", no GPU"
        dtype = f", {self.dtype}" if self.dtype else ""
        return f"{self.cpu}, {self.cores} cores{gpu}, torch {self.torch}{dtype}"


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as info:
            for line in info:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def this_machine() -> Machine:
    import torch

    from engine.models.synthesizer import pick_dtype

    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    dtype = pick_dtype(os.environ.get("CHATTERBOX_DTYPE", "auto"), "cuda" if gpu else "cpu")
    return Machine(
        cpu=cpu_name(), cores=os.cpu_count() or 1, gpu=gpu, torch=str(torch.__version__),
        dtype=str(dtype).removeprefix("torch."),
    )  # fmt: skip
