"""PCM16 helpers: odd byte counts are rejected with a clear message, and
resampling keeps duration (streamed chunk by chunk as well as whole)."""
from __future__ import annotations

import numpy as np
import pytest

from common.audio import (AudioFormatError, StreamResampler, check_pcm16, float_to_pcm16,
                          pcm16_to_float, pcm_duration_ms, resample_pcm16)


def tone(ms: int, rate: int) -> bytes:
    t = np.arange(int(rate * ms / 1000)) / rate
    return float_to_pcm16(0.3 * np.sin(2 * np.pi * 440 * t))


def test_odd_byte_count_rejected_with_reason():
    with pytest.raises(AudioFormatError, match="odd"):
        check_pcm16(b"\x00\x01\x02")


def test_float_roundtrip():
    x = pcm16_to_float(tone(100, 16000))
    assert x.dtype == np.float32 and 0.25 < np.abs(x).max() < 0.31


@pytest.mark.parametrize("src,dst", [(24000, 16000), (22050, 24000), (16000, 16000)])
def test_resample_keeps_duration(src, dst):
    out = resample_pcm16(tone(1000, src), src, dst)
    assert abs(pcm_duration_ms(out, dst) - 1000) < 2


def test_stream_resampler_matches_duration_in_chunks():
    rs = StreamResampler(22050, 24000)
    pcm = tone(1000, 22050)
    step = 882  # 20 ms
    out = b"".join(rs.process(pcm[i:i + step]) for i in range(0, len(pcm), step))
    out += rs.process(b"", last=True)
    assert abs(pcm_duration_ms(out, 24000) - 1000) < 5
