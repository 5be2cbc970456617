"""The capture worklet's resampler, run by Chromium's own audio engine
(OfflineAudioContext at 48 kHz, so no real time and no microphone).

Invariants: 48 kHz in becomes exactly half as many 24 kHz samples out, in
frames of 20 ms; a 1 kHz tone keeps its pitch and level; a 15 kHz tone (above
the 12 kHz Nyquist limit of 24 kHz) is filtered out instead of folding back
as a 9 kHz alias.
"""
from __future__ import annotations

import numpy as np
import pytest

from tests.browser.mock_gateway import MockGateway

RENDER = """async ([freq, seconds]) => {
  const ctx = new OfflineAudioContext(1, 48000 * seconds, 48000);
  await ctx.audioWorklet.addModule("js/worklets/capture-processor.js");
  const node = new AudioWorkletNode(ctx, "capture-processor", {
    numberOfInputs: 1, numberOfOutputs: 0,
    processorOptions: { targetRate: 24000, frameMs: 20 } });
  const frames = [];
  node.port.onmessage = (e) => frames.push(Array.from(new Int16Array(e.data.pcm)));
  const osc = new OscillatorNode(ctx, { frequency: freq });
  const gain = new GainNode(ctx, { gain: 0.5 });
  osc.connect(gain).connect(node);
  osc.start();
  await ctx.startRendering();
  // frames posted during rendering arrive as tasks: let them drain
  for (let i = 0; i < 50; i++) await new Promise((r) => setTimeout(r, 20));
  return frames;
}"""


@pytest.fixture(scope="module")
def page(playwright_instance):
    gw = MockGateway().start()
    browser = playwright_instance.chromium.launch(executable_path="/usr/bin/chromium", headless=True,
                                                  args=["--no-sandbox", "--disable-gpu"])
    p = browser.new_page()
    p.goto(gw.url)
    yield p
    browser.close()
    gw.stop()


def render(page, freq: float, seconds: int = 2) -> tuple[list[list[int]], np.ndarray]:
    frames = page.evaluate(RENDER, [freq, seconds])
    return frames, np.concatenate([np.asarray(f, dtype=np.float64) for f in frames]) / 32768.0


def test_rate_and_frame_size(page):
    frames, x = render(page, 1000.0)
    assert {len(f) for f in frames} == {480}                 # 20 ms at 24 kHz
    assert abs(len(x) - 48000) <= 480                        # 2 s at 24 kHz (last partial frame held)


def test_in_band_tone_keeps_pitch_and_level(page):
    _, x = render(page, 1000.0)
    x = x[2400:]                                             # skip the filter's start-up
    spectrum = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    peak_hz = np.argmax(spectrum) * 24000 / len(x)
    assert abs(peak_hz - 1000) < 5
    rms = np.sqrt(np.mean(x ** 2))
    assert abs(rms - 0.5 / np.sqrt(2)) < 0.02                # gain 0.5 sine: RMS 0.354


def test_out_of_band_tone_does_not_alias(page):
    _, x = render(page, 15000.0)
    rms = np.sqrt(np.mean(x[2400:] ** 2))
    assert rms < 0.02, rms                                   # a 0.354 RMS input, at least -25 dB down
