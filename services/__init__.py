"""The speech services and the gateway, one package each.

Every service process runs ``python -m services.<name>``, so this module is
imported before any of them imports numpy: it is where numpy's BLAS is held
to one thread. OpenBLAS's worker threads busy-wait for about 0.1 s after each
call before they sleep, so one small matrix product (Whisper's mel filter
bank, the echo detector's correlations) kept a second core spinning for no
gain: on the ASR, OpenBLAS's default threads cost ~110 ms of CPU per
transcription pass (305 against 193 ms of CPU for the same 180-190 ms of
wall time, docs/capacity-rechecks.md, re-check 4). The models' own thread
pools (CTranslate2, onnxruntime, llama.cpp) are sized by their settings and
are not affected. A user who wants threaded BLAS sets the variable."""
import os as _os

for _var in ("OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    _os.environ.setdefault(_var, "1")
