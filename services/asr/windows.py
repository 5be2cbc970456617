"""How much of Whisper's window a trimmed pass encodes, and how many tokens
its decode may take: numbers of the model and of CTranslate2, no model here
(engine.py uses them; tests/unit/test_asr_decode_cap.py pins them on the
real model)."""
from __future__ import annotations

import math

SAMPLE_RATE = 16000
FRAMES_PER_SECOND = 100      # Whisper's mel hop is 10 ms
WINDOW_FRAMES = 3000         # 30 s, the encoder's full window
HOP = SAMPLE_RATE // FRAMES_PER_SECOND
# Tokens a second of fast speech can need: English ~4 words/s, ~1.3 tokens a
# word. Other languages take more of Whisper's tokens for the same speech (one
# ~4 s sentence: en and de 18 tokens, ru 28, ja 27, hi 80), so they get a rate
# that covers the costliest script seen; their loops are cut later.
MAX_TOKENS_PER_SECOND = 7
MAX_TOKENS_PER_SECOND_OTHER = 25


def token_cap(seconds: float, language: str | None = "en") -> int:
    """New tokens a decode of ``seconds`` of audio in ``language`` may take:
    what fast speech could need, plus slack. A trimmed decode that reaches it
    has looped."""
    rate = MAX_TOKENS_PER_SECOND if language == "en" else MAX_TOKENS_PER_SECOND_OTHER
    return int(rate * seconds) + 8


def max_length(prompt_tokens: int, new_tokens: int, model_max: int) -> int:
    """The ``max_length`` to give CTranslate2's ``Whisper.generate`` so that it
    may produce exactly ``new_tokens`` tokens after a prompt of
    ``prompt_tokens``. CTranslate2 4.8 stops a Whisper decode after
    min(max_length // 2, max_length - prompt_tokens + 1) new tokens (measured;
    pinned by tests/unit/test_asr_decode_cap.py): passing prompt + cap, as the
    interims did until 2026-12-07, cut every decode at about half its cap,
    and a cut loop could pass for text ("Not an ill-disposed young man. Not
    an ill-d")."""
    return min(model_max, max(2 * new_tokens, new_tokens + prompt_tokens - 1))


def window_frames(content: int, pad_s: float) -> int:
    """Encoder frames for ``content`` frames of audio plus ``pad_s`` of padding: whole
    seconds, so CTranslate2 sees a few distinct shapes, not one per call."""
    pad = int(pad_s * FRAMES_PER_SECOND)
    return min(WINDOW_FRAMES, int(math.ceil((min(content, WINDOW_FRAMES) + pad) / FRAMES_PER_SECOND))
               * FRAMES_PER_SECOND)
