"""Where models prepared from their packages are kept (joined, converted):
``${VOICE_MODELS_DIR:-~/.cache/voice-assistant/models}``. Made once, at
install, image build or first start, never downloaded."""
from __future__ import annotations

import os
from pathlib import Path


def models_dir() -> Path:
    """${VOICE_MODELS_DIR:-~/.cache/voice-assistant/models}"""
    return Path(os.environ.get("VOICE_MODELS_DIR") or
                Path.home() / ".cache" / "voice-assistant" / "models").expanduser()
