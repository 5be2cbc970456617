"""Invariant: the tracing exporter is a setting. With an OTLP endpoint set,
a process's spans reach an OTLP/gRPC collector (here the in-test sink) with
the service's name and variant and the client's trace id, even across a real
gRPC call; with it empty, nothing is exported. Each case runs in its own
process because OpenTelemetry's global tracer provider can be set only once."""
from __future__ import annotations

import subprocess
import sys
import textwrap

from tests.observability.otlp_sink import OtlpSink
from tests.procs import ROOT

SCRIPT = textwrap.dedent("""
    import asyncio, sys
    import grpc
    from opentelemetry import trace
    from common.tracing import flush, inject_metadata, setup_tracing, current_trace_id
    from tests.observability.fake_grpc import SERVICE, fake_server

    async def main():
        setup_tracing("asr", sys.argv[1], variant="canary")
        async with fake_server("asr") as (addr, servicer):
            async with grpc.aio.insecure_channel(addr) as ch:
                with trace.get_tracer("client").start_as_current_span("turn"):
                    print(current_trace_id() or "none")
                    await ch.unary_unary(f"/{SERVICE}/Echo")(b"x", metadata=inject_metadata())
        flush()

    asyncio.run(main())
""")


def _run(endpoint: str) -> str:
    out = subprocess.run([sys.executable, "-c", SCRIPT, endpoint], cwd=ROOT, capture_output=True,
                         text=True, timeout=60, env={"PYTHONPATH": f"{ROOT}:{ROOT / 'gen'}"})
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


def test_spans_reach_the_otlp_endpoint_with_service_identity():
    with OtlpSink() as sink:
        trace_id = _run(sink.endpoint)
        assert sink.wait_for(lambda spans: len([s for s in spans if s.trace_id == trace_id]) >= 2)
        spans = sink.trace(trace_id)
    server = next(s for s in spans if s.name == "fake.v1.Fake/Echo")
    turn = next(s for s in spans if s.name == "turn")
    assert server.service == "asr" and server.parent_span_id == turn.span_id
    assert server.attributes["rpc.method"] == "Echo"


def test_no_endpoint_means_no_export():
    with OtlpSink() as sink:
        assert _run("") == "none"  # no provider installed: spans are non-recording
        assert not sink.wait_for(lambda spans: bool(spans), timeout=1.0)
