"""The one T3 prompt builder: text ids as upstream pads them, and the prompt embeddings a job is prefilled
with (voice conditionals, text, start of speech)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from chatterbox.models.t3 import T3
from chatterbox.models.t3.modules.cond_enc import T3Cond
from chatterbox.models.tokenizers import EnTokenizer
from chatterbox.tts import punc_norm


def text_ids(t3: T3, tokenizer: EnTokenizer, text: str) -> torch.Tensor:
    """(1, n) ids of one text piece, punctuation normalised, between the start and stop text tokens."""
    hp = t3.hp
    ids = tokenizer.text_to_tokens(punc_norm(text)).to(t3.device)
    ids = F.pad(ids, (1, 0), value=hp.start_text_token)
    return F.pad(ids, (0, 1), value=hp.stop_text_token)


@torch.inference_mode()
def prompt_embeds(t3: T3, ids: torch.Tensor, cond: T3Cond, rows: int, cfg_weight: float) -> torch.Tensor:
    """(rows, length, width) embeddings of the whole prompt; row 1 is the unconditioned one with CFG."""
    hp = t3.hp
    start = torch.full((rows, 1), hp.start_speech_token, dtype=torch.long, device=t3.device)
    embeds, _ = t3.prepare_input_embeds(
        t3_cond=cond, text_tokens=ids.expand(rows, -1), speech_tokens=start, cfg_weight=cfg_weight
    )
    # Upstream appends a second start-of-speech embedding after the prompt; the model was used so.
    bos = t3.speech_emb(start[:1]) + t3.speech_pos_emb.get_fixed_embedding(0)
    return torch.cat([embeds, bos.expand(rows, -1, -1)], dim=1)
