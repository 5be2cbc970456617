"""Invariant: RED metrics tell errors from barge-ins. A stream the client
cancels counts as cancelled, never as an error; a servicer failure counts as
an error with its gRPC code; in-flight returns to zero either way. /metrics
serves OpenMetrics (with trace-id exemplars) to Prometheus and the classic
text format to everyone else, and exports process CPU and memory."""
from __future__ import annotations

import asyncio
import urllib.request
import uuid

import grpc
import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider

from common import metrics
from tests.observability.fake_grpc import SERVICE, fake_server
from tests.procs import free_port

# What Prometheus 2.x sends when scraping.
PROMETHEUS_ACCEPT = ("application/openmetrics-text;version=1.0.0,application/openmetrics-text;"
                     "version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1")


@pytest.fixture(autouse=True)
def _identity_restored():
    """init() relabels the whole process: put the labels back, so that other
    test files in this process (a pytest-xdist worker runs several, in any
    order) read their series under the labels they expect."""
    saved = metrics.base()
    yield
    metrics._Base.service, metrics._Base.model, metrics._Base.variant = (
        saved["service"], saved["model"], saved["variant"])


@pytest.fixture
def labels() -> dict[str, str]:
    """A fresh service label per test: the registry is process-global."""
    metrics.init(f"obs-{uuid.uuid4().hex[:8]}", "fake-model", "canary")
    return metrics.base()


def value(name: str, **labels: str) -> float:
    v = metrics.REGISTRY.get_sample_value(name, labels)
    return 0.0 if v is None else v


async def test_cancelled_stream_is_not_an_error(labels):
    async with fake_server() as (addr, servicer):
        async with grpc.aio.insecure_channel(addr) as ch:
            call = ch.unary_stream(f"/{SERVICE}/Count")(b"")
            async for _ in call:
                break  # barge-in: the client stops listening...
            call.cancel()  # ...and cancels
            await asyncio.wait_for(servicer.cleaned_up.wait(), 5)
        # The interceptor finishes after the servicer's finally; give it a tick.
        for _ in range(100):
            if value("voice_rpc_cancelled_total", **labels, method="Count"):
                break
            await asyncio.sleep(0.01)
    assert value("voice_rpc_requests_total", **labels, method="Count") == 1
    assert value("voice_rpc_cancelled_total", **labels, method="Count") == 1
    assert value("voice_rpc_errors_total", **labels, method="Count", code="CANCELLED") == 0
    assert value("voice_rpc_in_flight", **labels, method="Count") == 0
    assert value("voice_rpc_duration_seconds_count", **labels, method="Count", code="CANCELLED") == 1


async def test_servicer_failure_counts_as_error_with_its_code(labels):
    async with fake_server() as (addr, _):
        async with grpc.aio.insecure_channel(addr) as ch:
            with pytest.raises(grpc.aio.AioRpcError) as err:
                async for _ in ch.unary_stream(f"/{SERVICE}/Count")(b"fail"):
                    pass
            assert err.value.code() == grpc.StatusCode.INTERNAL
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await ch.unary_unary(f"/{SERVICE}/Echo")(b"invalid")
            assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert value("voice_rpc_errors_total", **labels, method="Count", code="INTERNAL") == 1
    assert value("voice_rpc_errors_total", **labels, method="Echo", code="INVALID_ARGUMENT") == 1
    assert value("voice_rpc_cancelled_total", **labels, method="Count") == 0
    assert value("voice_rpc_in_flight", **labels, method="Count") == 0


async def test_completed_calls_count_requests_and_ok_durations(labels):
    async with fake_server() as (addr, _):
        async with grpc.aio.insecure_channel(addr) as ch:
            assert await ch.unary_unary(f"/{SERVICE}/Echo")(b"hi") == b"hi"
            items = [x async for x in ch.unary_stream(f"/{SERVICE}/Count")(b"finite")]
    assert items == [b"0", b"1", b"2"]
    for method in ("Echo", "Count"):
        assert value("voice_rpc_requests_total", **labels, method=method) == 1
        assert value("voice_rpc_duration_seconds_count", **labels, method=method, code="OK") == 1
        assert value("voice_rpc_errors_total", **labels, method=method, code="OK") == 0


def test_model_loaded_starts_at_zero_and_follows_the_model_label(labels):
    assert metrics.REGISTRY.get_sample_value("voice_model_loaded", labels) == 0
    metrics.MODEL_LOADED.labels(**labels).set(1)
    metrics.set_model("real-model")
    assert metrics.REGISTRY.get_sample_value("voice_model_loaded", labels) is None
    assert value("voice_model_loaded", **(labels | {"model": "real-model"})) == 1


def test_a_process_without_a_model_exports_no_model_loaded_series():
    """The gateway loads no model: a constant 0 would page VoiceModelNotLoaded
    on a healthy stack."""
    metrics.init(f"obs-{uuid.uuid4().hex[:8]}", "pipeline", "stable", serves_model=False)
    assert metrics.REGISTRY.get_sample_value("voice_model_loaded", metrics.base()) is None
    body, _ = metrics.exposition("text/plain")
    assert metrics.base()["service"] not in body.decode()


def test_gateway_slo_series_exist_at_zero_before_the_first_event():
    """rate() cannot see a series' first value: a series created by the first
    turn would hide that turn from the SLOs."""
    from services.gateway import metrics as gateway_metrics

    metrics.init(f"obs-{uuid.uuid4().hex[:8]}", "pipeline", "stable", serves_model=False)
    gateway_metrics.init_series()
    b = metrics.base()
    get = metrics.REGISTRY.get_sample_value
    for outcome in ("completed", "cancelled", "failed"):
        assert get("voice_gateway_turns_total", b | {"outcome": outcome}) == 0
    assert get("voice_gateway_voice_to_voice_seconds_count", b) == 0
    assert get("voice_gateway_voice_to_voice_seconds_bucket", b | {"le": "1.2"}) == 0
    assert get("voice_gateway_barge_in_reaction_seconds_count", b) == 0
    assert get("voice_gateway_task_failures_total", b | {"task": "asr-stream", "action": "close"}) == 0
    # An outage's first failure must reach the rate() alerts (and a drill's time to detect).
    for backend in ("vad", "asr", "llm", "rag", "tts"):
        assert get("voice_gateway_backend_errors_total", b | {"backend": backend}) == 0
    assert get("voice_gateway_redis_failures_total", b | {"op": "write"}) == 0
    # ... and a first error event of a code (the "Error events by code" panel a drill reads).
    for code in ("backend_unavailable", "internal_error", "server_busy"):
        assert get("voice_gateway_errors_total", b | {"code": code}) == 0


def _traced_observation(hist: metrics.Histogram, labels: dict[str, str]) -> str:
    provider = TracerProvider()  # a private provider: no global state touched
    with provider.get_tracer("t").start_as_current_span("turn") as span:
        metrics.observe_with_trace(hist.labels(**labels), 0.7)
        return format(span.get_span_context().trace_id, "032x")


def test_exemplar_carries_trace_id_in_openmetrics_only(labels):
    hist = metrics.histogram(f"obs_test_{uuid.uuid4().hex[:8]}_seconds", "test latency")
    trace_id = _traced_observation(hist, labels)
    metrics.observe_with_trace(hist.labels(**labels), 0.05)  # outside a span: no exemplar

    body, ctype = metrics.exposition(PROMETHEUS_ACCEPT)
    assert ctype.startswith("application/openmetrics-text")
    lines = [ln for ln in body.decode().splitlines() if ln.startswith(hist._name + "_bucket")]
    with_exemplar = [ln for ln in lines if "# {" in ln]
    assert len(with_exemplar) == 1 and f'trace_id="{trace_id}"' in with_exemplar[0]
    assert 'le="0.8"' in with_exemplar[0]  # the bucket 0.7 fell into

    body, ctype = metrics.exposition("text/plain")
    assert ctype.startswith("text/plain") and trace_id not in body.decode()
    assert trace.get_current_span().get_span_context().is_valid is False


def test_side_port_negotiates_openmetrics_and_exports_process_metrics(labels):
    port = free_port()
    metrics.start_metrics_server(port, host="127.0.0.1")
    req = urllib.request.Request(f"http://127.0.0.1:{port}/metrics", headers={"Accept": PROMETHEUS_ACCEPT})
    with urllib.request.urlopen(req, timeout=5) as resp:
        ctype, text = resp.headers["Content-Type"], resp.read().decode()
    assert ctype.startswith("application/openmetrics-text")
    assert text.rstrip().endswith("# EOF")
    for name in ("process_cpu_seconds_total", "process_resident_memory_bytes", "voice_model_loaded"):
        assert any(ln.startswith(name) for ln in text.splitlines()), name
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
        assert resp.headers["Content-Type"].startswith("text/plain")
