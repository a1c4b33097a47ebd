"""S3Gen's token-to-mel flow run on a window of tokens with caller-supplied noise.

Upstream's `CausalMaskedDiffWithXvec.inference` draws fresh noise for the prompt on every call and,
with `finalize=False`, trims the encoder output but not its mask. This runs the same modules (encoder,
projection, CFM decoder with CFG) with the trim done right and all noise taken from the caller.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from chatterbox.models.s3gen.flow import CausalMaskedDiffWithXvec

N_TIMESTEPS = 10  # upstream's default for the non-meanflow model
TOKEN_MEL_RATIO = 2
LOOKAHEAD_TOKENS = 3  # the encoder's pre-lookahead layer reads 3 tokens ahead


def flow_mels(
    flow: CausalMaskedDiffWithXvec,
    ref: dict,
    tokens: torch.Tensor,
    prompt_noise: torch.Tensor,
    noise: torch.Tensor,
    drop_tokens: int = 0,
    n_timesteps: int = N_TIMESTEPS,
) -> torch.Tensor:
    """Mel frames (1, 80, 2 * (len(tokens) - drop_tokens)) for `tokens` (1, N) after the voice prompt.

    `drop_tokens` leaves the last tokens out of the decoder (look-ahead only). `prompt_noise` is
    (80, 2P) for the prompt frames, `noise` (80, >= 2N) for the tokens' frames.
    """
    return flow_mels_batch(flow, [ref], tokens, [prompt_noise], [noise], drop_tokens, n_timesteps)


@torch.inference_mode()
def flow_mels_batch(
    flow: CausalMaskedDiffWithXvec,
    refs: Sequence[dict],
    tokens: torch.Tensor,
    prompt_noise: Sequence[torch.Tensor],
    noise: Sequence[torch.Tensor],
    drop_tokens: int = 0,
    n_timesteps: int = N_TIMESTEPS,
) -> torch.Tensor:
    """flow_mels for B streams at once: row b is stream b's voice, tokens (B, N) and noise.

    All prompts have one length and all windows one length, so nothing is padded and every row sees
    exactly the positions it sees alone.
    """
    dtype = flow.encoder_proj.weight.dtype
    device = flow.encoder_proj.weight.device
    batch = tokens.shape[0]
    prompt_token = torch.cat([r["prompt_token"] for r in refs]).to(device)
    prompt_feat = torch.cat([r["prompt_feat"] for r in refs]).to(device=device, dtype=dtype)
    embedding = torch.cat([torch.atleast_2d(r["embedding"]) for r in refs]).to(device=device, dtype=dtype)
    spks = flow.spk_embed_affine_layer(F.normalize(embedding, dim=1))

    all_tokens = torch.cat([prompt_token, tokens.to(device)], dim=1)
    n_all = all_tokens.shape[1]
    lengths = torch.full((batch,), n_all, device=device)
    h, _ = flow.encoder(flow.input_embedding(all_tokens.long()), lengths)
    if drop_tokens:
        h = h[:, : h.shape[1] - drop_tokens * TOKEN_MEL_RATIO]
    mu = flow.encoder_proj(h).transpose(1, 2).contiguous()
    frames = mu.shape[2]
    n_prompt = prompt_feat.shape[1]
    cond = torch.zeros(batch, 80, frames, device=device, dtype=dtype)
    cond[:, :, :n_prompt] = prompt_feat.transpose(1, 2)
    mask = torch.ones(batch, 1, frames, device=device, dtype=dtype)
    z = torch.stack(
        [torch.cat([p, n[:, : frames - n_prompt]], dim=1) for p, n in zip(prompt_noise, noise, strict=True)]
    ).to(device=device, dtype=dtype)
    t_span = torch.linspace(0, 1, n_timesteps + 1, device=device, dtype=dtype)
    t_span = 1 - torch.cos(t_span * 0.5 * torch.pi)
    mel = flow.decoder.solve_euler(z, t_span=t_span, mu=mu, mask=mask, spks=spks, cond=cond)
    return mel[:, :, n_prompt:].float()
