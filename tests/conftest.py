"""Shared fixtures: the project root on sys.path and generated stubs importable."""
from __future__ import annotations

import os
import sys
from pathlib import Path

# Every service process holds numpy's BLAS to one thread (services/__init__.py);
# engines run in a test process do the same (set before anything imports numpy),
# so tests see the services' numerics. Found when a 0.5 s phrase on tiny.en
# failed a CI run (tests/integration/test_asr_short_phrases.py): its trimmed pass
# loops either way and is redone on the full window, whose temperature-0 pass
# was kept with one BLAS thread (the same text each run) and, with OpenBLAS's
# threads, fell back to faster-whisper's random sampling (a different text
# each run, once a loop). That randomness is still there for a phrase whose
# temperature-0 pass fails too (issue #13).
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

ROOT = Path(__file__).resolve().parent.parent
for p in (ROOT, ROOT / "gen"):
    if str(p) not in sys.path:
        sys.path.insert(0, str(p))
