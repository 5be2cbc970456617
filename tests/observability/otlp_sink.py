"""An in-process OTLP/gRPC trace receiver for tests: services export to it
exactly as they would to a collector (``*_OTLP_ENDPOINT=http://127.0.0.1:<port>``)
and the test reads back the spans it recorded."""
from __future__ import annotations

import dataclasses
import threading
import time
from concurrent import futures
from typing import Callable

import grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc


@dataclasses.dataclass(frozen=True)
class RecordedSpan:
    service: str          # resource attribute service.name
    name: str
    trace_id: str         # 32 hex digits
    span_id: str
    parent_span_id: str   # "" for a root span
    kind: int
    status_code: int      # 0 unset, 1 ok, 2 error
    attributes: dict


def _value(v) -> object:
    kind = v.WhichOneof("value")
    return getattr(v, kind) if kind else None


class _Receiver(trace_service_pb2_grpc.TraceServiceServicer):
    def __init__(self, sink: "OtlpSink") -> None:
        self._sink = sink

    def Export(self, request, context):  # noqa: N802 (grpc method name)
        spans = []
        for rs in request.resource_spans:
            res = {a.key: _value(a.value) for a in rs.resource.attributes}
            service = str(res.get("service.name", ""))
            for ss in rs.scope_spans:
                for s in ss.spans:
                    spans.append(RecordedSpan(
                        service=service, name=s.name, trace_id=s.trace_id.hex(),
                        span_id=s.span_id.hex(), parent_span_id=s.parent_span_id.hex(),
                        kind=s.kind, status_code=s.status.code,
                        attributes={a.key: _value(a.value) for a in s.attributes}))
        self._sink._add(spans)
        return trace_service_pb2.ExportTraceServiceResponse()


class OtlpSink:
    """``with OtlpSink() as sink: ... sink.endpoint ... sink.spans()``"""

    def __init__(self) -> None:
        self._spans: list[RecordedSpan] = []
        self._lock = threading.Lock()
        self._server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        trace_service_pb2_grpc.add_TraceServiceServicer_to_server(_Receiver(self), self._server)
        self.port = self._server.add_insecure_port("127.0.0.1:0")

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> "OtlpSink":
        self._server.start()
        return self

    def __exit__(self, *exc) -> None:
        self._server.stop(grace=1).wait()

    def _add(self, spans: list[RecordedSpan]) -> None:
        with self._lock:
            self._spans.extend(spans)

    def spans(self) -> list[RecordedSpan]:
        with self._lock:
            return list(self._spans)

    def trace(self, trace_id: str) -> list[RecordedSpan]:
        return [s for s in self.spans() if s.trace_id == trace_id]

    def wait_for(self, predicate: Callable[[list[RecordedSpan]], bool], timeout: float = 15.0) -> bool:
        """Poll until ``predicate(spans)`` holds (exporters batch for seconds)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate(self.spans()):
                return True
            time.sleep(0.1)
        return predicate(self.spans())
