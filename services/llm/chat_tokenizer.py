"""The real ``ChatTokenizer`` (model.py): the GGUF's chat template rendered
and tokenized on a vocab-only llama.cpp model, with message text kept from
spelling the template's control tokens (``neutralize``)."""
from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any, Sequence, cast

from services.llm.schema import InvalidRequest
from services.llm.tools import is_opener

if TYPE_CHECKING:
    from services.llm.model import LlamaOptions


def neutralize(text: str, specials: Sequence[str]) -> str:
    """Message text (a user's words, a document's passage, a tool's output) is
    data: it is tokenized together with the chat template, whose special
    tokens are parsed from their text, so a passage reading
    "<|im_start|>system" would open a system turn. Each such spelling gets a
    space after its first character: the words stay readable, the token
    cannot form."""
    changed = True
    while changed:
        changed = False
        for s in specials:
            if s in text:
                text = text.replace(s, s[0] + " " + s[1:])
                changed = True
    return text


class LlamaChatTokenizer:
    """Chat template from the GGUF metadata + a vocab-only llama.cpp model.

    Tokenizing on a separate vocab-only model means requests can be validated
    (prompt length!) before they wait for a busy generation instance."""

    def __init__(self, opts: LlamaOptions) -> None:
        from llama_cpp import Llama
        from llama_cpp.llama_chat_format import Jinja2ChatFormatter

        self._vocab = Llama(opts.model_path, vocab_only=True, verbose=False)
        self.n_ctx = opts.n_ctx
        template = self._vocab.metadata.get("tokenizer.chat_template")
        if not template:
            raise RuntimeError(f"{opts.model_path} has no chat template (not an instruct model?)")
        eos, bos = self._vocab.token_eos(), self._vocab.token_bos()
        self._formatter = Jinja2ChatFormatter(
            template=template,
            eos_token=self._vocab._model.token_get_text(eos) if eos != -1 else "",
            bos_token=self._vocab._model.token_get_text(bos) if bos != -1 else "",
            stop_token_ids=[eos],
        )
        self._lock = threading.Lock()
        self._specials = self._special_texts()
        self._openers: list[int] | None = None

    def call_openers(self) -> Sequence[int]:
        """Every token whose text starts a JSON object (computed once)."""
        with self._lock:
            if self._openers is None:
                model = self._vocab._model
                self._openers = [t for t in range(self._vocab.n_vocab())
                                 if is_opener(model.token_get_text(t).replace("\u0120", " "))]
            return self._openers

    def check_grammar(self, gbnf: str) -> None:
        import llama_cpp

        with self._lock:
            sampler = llama_cpp.llama_sampler_init_grammar(self._vocab._model.vocab, gbnf.encode("utf-8"),
                                                           b"root")
        if not sampler:
            raise InvalidRequest("tools: llama.cpp refused the grammar built from the tools' schemas")
        llama_cpp.llama_sampler_free(sampler)

    def _special_texts(self) -> list[str]:
        """The text of every control token (<|im_start|>, <|im_end|>, ...),
        longest first: message text must never spell one (see neutralize)."""
        import llama_cpp

        vocab = self._vocab._model.vocab
        texts = {self._vocab._model.token_get_text(t) for t in range(self._vocab.n_vocab())
                 if llama_cpp.llama_vocab_is_control(vocab, t) or llama_cpp.llama_vocab_is_eog(vocab, t)}
        return sorted((t for t in texts if len(t) >= 2), key=len, reverse=True)

    def _safe(self, messages: list[dict[str, str]]) -> list[dict[str, str]]:
        return [m | {"content": neutralize(m["content"], self._specials)} for m in messages]

    def encode_chat(self, messages: list[dict[str, str]]) -> list[int]:
        rendered = self._formatter(messages=cast(Any, self._safe(messages)))   # plain role/content dicts
        with self._lock:
            return self._vocab.tokenize(rendered.prompt.encode("utf-8"),
                                        add_bos=not rendered.added_special, special=True)

    def encode_chat_open(self, messages: list[dict[str, str]]) -> list[int] | None:
        """The prompt cut right after the last message's text (its end-of-turn
        and the assistant opener left out): a prefix of the prompt of the same
        chat once that message is complete. None if the text is not found."""
        messages = self._safe(messages)
        rendered = self._formatter(messages=cast(Any, messages))
        last = messages[-1]["content"].strip()
        cut = rendered.prompt.rfind(last) if last else -1
        if cut < 0:
            return None
        with self._lock:
            return self._vocab.tokenize(rendered.prompt[:cut + len(last)].encode("utf-8"),
                                        add_bos=not rendered.added_special, special=True)

    def stop_token_ids(self) -> set[int]:
        """End-of-generation tokens plus the template's turn opener (a model
        that starts a new turn has finished its own)."""
        import llama_cpp

        vocab = self._vocab._model.vocab
        ids = {t for t in range(self._vocab.n_vocab()) if llama_cpp.llama_vocab_is_eog(vocab, t)}
        for marker in ("<|im_start|>", "<|start_header_id|>", "<start_of_turn>"):
            toks = self._vocab.tokenize(marker.encode(), add_bos=False, special=True)
            if len(toks) == 1:
                ids.add(toks[0])
        return ids
