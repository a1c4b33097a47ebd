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

    def slug(self) -> str:
        """A short file-name-safe name: the GPU's, else `cpu<cores>`."""
        name = self.gpu or f"cpu{self.cores}"
        return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")

    def describe(self) -> str:
        gpu = f", GPU {self.gpu}" if self.gpu else ", no GPU"
        return f"{self.cpu}, {self.cores} cores{gpu}, torch {self.torch}"


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

    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    return Machine(cpu=cpu_name(), cores=os.cpu_count() or 1, gpu=gpu, torch=str(torch.__version__))
