"""Streaming HiFT vocoder: mel frames in, 24 kHz audio out, matching one offline call on the same mel.

Per call it vocodes the new frames with `context` frames of left context and holds `context` frames
back on the right (they are vocoded next time, once their right context exists). The harmonic source
is rebuilt here rather than by `SourceModuleHnNSF`: f0 per frame is kept once final, the sine phase is
a float64 running sum carried across calls, per-harmonic phase offsets are fixed per stream, and the
source noise is read from a tape by absolute sample. Then HiFT's own `decode` runs on mel + source.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from chatterbox.models.s3gen.hifigan import HiFTGenerator

from engine.models.s3gen.noise import NoiseTape

HOP = 480  # samples per mel frame at 24 kHz


class HiftStream:
    def __init__(self, hift: HiFTGenerator, seed: int, context: int = 8) -> None:
        self.hift = hift
        sine = hift.m_source.l_sin_gen
        self.harmonics = sine.harmonic_num + 1
        self.sine_amp = float(sine.sine_amp)
        self.noise_std = float(sine.noise_std)
        self.voiced_threshold = float(sine.voiced_threshold)
        self.sr = int(sine.sampling_rate)
        self.context = context
        gen = torch.Generator().manual_seed(seed)
        offsets = (torch.rand(self.harmonics, 1, generator=gen, dtype=torch.float64) * 2 - 1) * math.pi
        offsets[0] = 0.0
        self.phase_offsets = offsets
        self.noise = NoiseTape(seed + 1, self.harmonics, block=HOP * 50)
        self.mel = torch.zeros(1, 80, 0)  # frames not yet emitted, plus left context
        self.mel_start = 0  # absolute frame index of self.mel[..., 0]
        self.emitted = 0  # frames whose audio has been emitted
        self.f0_done = torch.zeros(0, dtype=torch.float64)  # final f0 of the context frames
        self.phase_done = torch.zeros(self.harmonics, 1, dtype=torch.float64)  # cycles at emitted end

    @torch.inference_mode()
    def push(self, mel: torch.Tensor, final: bool) -> np.ndarray:
        """Append mel frames (1, 80, n); return the audio that is now final (float32, mono)."""
        self.mel = torch.cat([self.mel, mel.float().cpu()], dim=2)
        end = self.mel_start + self.mel.shape[2]
        emit_to = end if final else end - self.context
        if emit_to <= self.emitted:
            return np.zeros(0, dtype=np.float32)
        device = next(self.hift.parameters()).device
        window = self.mel.to(device)
        f0 = self.hift.f0_predictor(window)[0].double().cpu()  # (frames,)
        known = self.emitted - self.mel_start  # context frames whose f0 is already final
        f0[:known] = self.f0_done[-known:] if known else f0[:0]
        source = self._source(f0, known)
        wav = self.hift.decode(x=window, s=source.to(device=device, dtype=window.dtype))[0]
        n_new = emit_to - self.emitted
        out = wav[known * HOP : (known + n_new) * HOP].float().cpu().numpy()

        # Keep what the next call needs: f0 and phase at the emitted end, `context` frames of mel.
        new_f0 = f0[known : known + n_new]
        self.phase_done = self.phase_done + self._cycles(new_f0)
        self.f0_done = torch.cat([self.f0_done, new_f0])[-self.context :]
        self.emitted = emit_to
        keep_from = max(self.mel_start, self.emitted - self.context)
        self.mel = self.mel[:, :, keep_from - self.mel_start :]
        self.mel_start = keep_from
        return out

    def _cycles(self, f0: torch.Tensor) -> torch.Tensor:
        """Phase advance in cycles per harmonic over frames with the given f0 (HOP samples each)."""
        k = torch.arange(1, self.harmonics + 1, dtype=torch.float64)[:, None]
        return (k * f0.sum() * HOP / self.sr).reshape(self.harmonics, 1)

    def _source(self, f0: torch.Tensor, known: int) -> torch.Tensor:
        """The excitation (1, 1, samples) for the current window, upstream's SineGen + linear + tanh."""
        k = torch.arange(1, self.harmonics + 1, dtype=torch.float64)[:, None]
        f0_up = f0.repeat_interleave(HOP)[None]  # nearest upsampling, as nn.Upsample does
        # Phase at the window start: carried phase minus the advance over the known context frames.
        start = self.phase_done - self._cycles(f0[:known]) if known else self.phase_done
        cycles = (start + torch.cumsum(k * f0_up / self.sr, dim=1)) % 1.0
        sines = self.sine_amp * torch.sin(2 * math.pi * cycles + self.phase_offsets)
        uv = (f0_up > self.voiced_threshold).double()
        first = self.mel_start * HOP
        noise = self.noise.read(first, first + f0_up.shape[1]).double()
        amp = uv * self.noise_std + (1 - uv) * self.sine_amp / 3
        excitation = (sines * uv + amp * noise).float()  # (harmonics, samples)
        lin = self.hift.m_source.l_linear
        merged = torch.tanh(lin(excitation.T.to(lin.weight.device, lin.weight.dtype)))  # (samples, 1)
        return merged.T[None]
