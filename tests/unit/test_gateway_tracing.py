"""One trace per user turn: the gateway opens a root span when the user starts
speaking, tells the long-lived VAD and ASR streams (so their segment and
utterance spans join it), and the response answering the turn is its child
and ends it. A barge-in starts the next turn's own trace."""
from __future__ import annotations

from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from tests.unit.test_gateway_turns import QUESTION, session

_EXPORTER = InMemorySpanExporter()


def _install() -> None:
    provider = trace.get_tracer_provider()
    if not isinstance(provider, TracerProvider):
        trace.set_tracer_provider(TracerProvider())
        provider = trace.get_tracer_provider()
    provider.add_span_processor(SimpleSpanProcessor(_EXPORTER))


_install()


def _tid(carrier: dict[str, str]) -> int:
    return int(carrier["traceparent"].split("-")[1], 16)


async def test_each_user_turn_is_one_trace_with_vad_asr_and_response():
    _EXPORTER.clear()
    async with session([(0.5, 2.5), (5.0, 5.4)], [QUESTION, "stop"]) as s:
        await s.run_audio(10.0)
        assert s.of("response.done"), s.types()
        vad_traces = [t for st in s.b.vad._streams for t in st.traces]
        asr_traces = [t for st in s.b.asr._streams for t in st.traces]
    spans = [sp for sp in _EXPORTER.get_finished_spans() if sp.instrumentation_scope.name == "gateway"]
    turns = [sp for sp in spans if sp.name == "turn"]
    assert len(turns) == 2, [sp.name for sp in spans]
    assert all(sp.parent is None for sp in turns), "a turn span starts its own trace"
    assert len({sp.context.trace_id for sp in turns}) == 2
    # The streams were told each turn's context, in order.
    assert [_tid(c) for c in vad_traces] == [sp.context.trace_id for sp in sorted(turns, key=lambda x: x.start_time)]
    assert [_tid(c) for c in asr_traces] == [_tid(c) for c in vad_traces]
    # Each turn's response (and its stages) live in that turn's trace.
    for turn in turns:
        responses = [sp for sp in spans if sp.name == "response" and sp.parent
                     and sp.parent.span_id == turn.context.span_id]
        assert len(responses) == 1, turn.attributes
        stages = {sp.name for sp in spans if sp.parent and sp.parent.span_id == responses[0].context.span_id}
        assert {"llm", "tts"} <= stages, stages
