"""The ASR service refuses to start with defaults no client could send: an
out-of-range default interim interval once made every stream fail with
INVALID_ARGUMENT, so every gateway session stayed deaf while the service
reported SERVING."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from services.asr.results import InvalidRequest
from services.asr.validate import Defaults, check_defaults

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("defaults, named", [
    (Defaults(interim_interval_ms=800), "ASR_INTERIM_INTERVAL_MS 800"),
    (Defaults(interim_interval_ms=-1), "ASR_INTERIM_INTERVAL_MS -1"),
    (Defaults(beam_size=0), "ASR_BEAM_SIZE 0"),
    (Defaults(beam_size=11), "ASR_BEAM_SIZE 11"),
])
def test_out_of_range_defaults_are_named(defaults, named):
    with pytest.raises(InvalidRequest, match=named):
        check_defaults(defaults)


def test_the_shipped_defaults_pass():
    check_defaults(Defaults())


def test_the_service_exits_at_start_naming_the_setting():
    env = dict(os.environ) | {"PYTHONPATH": f"{ROOT}:{ROOT / 'gen'}", "ASR_INTERIM_INTERVAL_MS": "800",
                              "ASR_PORT": "0", "ASR_METRICS_PORT": "0"}
    proc = subprocess.run([sys.executable, "-m", "services.asr"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode != 0
    assert "ASR_INTERIM_INTERVAL_MS 800 is out of range" in proc.stderr
