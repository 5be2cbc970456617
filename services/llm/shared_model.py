"""One copy of a GGUF model's weights shared by several llama.cpp contexts
(batched.py: each context holds only its KV cache and compute buffers)."""
from __future__ import annotations

from services.llm.model import LlamaOptions


class SharedModel:
    """The weights, loaded once, shared by every batched context (a llama.cpp
    model may serve several contexts; each holds only its KV cache and
    compute buffers). Freed when the last context closes."""

    def __init__(self, opts: LlamaOptions) -> None:
        import llama_cpp
        from llama_cpp import _internals

        mparams = llama_cpp.llama_model_default_params()
        mparams.n_gpu_layers = opts.n_gpu_layers
        self.model = _internals.LlamaModel(path_model=opts.model_path, params=mparams, verbose=False)
        self.users = 0

    def release(self) -> None:
        self.users -= 1
        if self.users <= 0:
            self.model.close()
