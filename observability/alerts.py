"""Plain (non-SLO) alerts: a component down, a model that does not load,
saturation, gRPC errors, gateway dependencies. The SLO burn-rate alerts are
generated from observability/slo.py; these cover causes the SLOs would only
show late (a canary pod that cannot load its model serves nothing, so the
turn-error SLO never sees it).

Thresholds are module constants so a deployment can tune them in one place;
each says why it has its value."""
from __future__ import annotations

import dataclasses

from common.components import COMPONENTS, SPEECH_SERVICES

# Jobs are named after components in prometheus.yml (job="asr", ...).
ALL_JOBS = "|".join(c.name for c in COMPONENTS)
SPEECH_JOBS = "|".join(c.name for c in SPEECH_SERVICES)

# A speech process runs inference on `threads` cores (default 2); more than
# 90 % of that for 10 minutes means requests queue behind each other.
CPU_CORES_PER_PROCESS = 2.0
# The largest model process (LLM, ~1.5 GiB of weights plus KV cache) stays
# well below this; above it the node starts swapping or OOM-kills.
MEMORY_BYTES_LIMIT = 6 * 1024**3
# The gateway's per-session queues are bounded; a queue this deep for a
# minute means a consumer (TTS playback, ASR feed) has stalled.
QUEUE_DEPTH_LIMIT = 50
# More than 5 % of RPCs of one method failing (CANCELLED excluded) is a
# backend problem, not a client one.
GRPC_ERROR_RATIO_LIMIT = 0.05
# People turned away at connect (server_busy, the session limit): a few in
# 5 minutes is a burst the clients' retry hint absorbs; this many, sustained
# for 10 minutes, means the fleet is at capacity and must grow.
REFUSED_PER_5M_LIMIT = 5
# A process that started this often in 15 minutes is crashing, not being
# deployed: a rollout starts new instances (new `instance` labels), a crash
# restarts the same one. Each restart of the gateway drops every session.
RESTARTS_PER_15M_LIMIT = 3
# A canary is judged against stable, but only once it errs noticeably at all.
CANARY_MIN_ERROR_RATIO = 0.01


def _ratio(variant: str) -> str:
    """Per-service RPC error ratio of one variant over 10 minutes."""
    sel = f'{{variant="{variant}"}}'
    return (f"(sum by (service) (rate(voice_rpc_errors_total{sel}[10m]))"
            f" / sum by (service) (rate(voice_rpc_requests_total{sel}[10m])))")


@dataclasses.dataclass(frozen=True)
class Alert:
    name: str
    expr: str
    for_: str
    severity: str
    summary: str
    description: str

    @property
    def runbook(self) -> str:
        """docs/runbooks/<name>.md: what to look at first and how to mitigate."""
        return f"{self.name}.md"


PLAIN_ALERTS: tuple[Alert, ...] = (
    Alert(
        name="VoiceComponentDown",
        expr=f'up{{job=~"{ALL_JOBS}"}} == 0',
        for_="1m",
        severity="page",
        summary="{{ $labels.job }} on {{ $labels.instance }} is down",
        description="Prometheus cannot scrape {{ $labels.job }} ({{ $labels.instance }}) "
                    "for 1 minute: the process is dead, restarting or unreachable.",
    ),
    Alert(
        # A crash loop of quick restarts (a second each, backoff reset by a few
        # minutes of running) can stay between scrapes: VoiceComponentDown
        # never holds for a minute. The process's start time changes each time.
        name="VoiceComponentRestarting",
        expr=(f'changes(process_start_time_seconds{{job=~"{ALL_JOBS}"}}[15m]) '
              f'>= {RESTARTS_PER_15M_LIMIT}'),
        for_="1m",
        severity="ticket",
        summary="{{ $labels.job }} on {{ $labels.instance }} restarted {{ $value }} times in 15 minutes",
        description="The process of {{ $labels.job }} ({{ $labels.instance }}) keeps starting again: it "
                    "crashes (a traceback, an OOM kill) and is restarted quickly enough that it is never "
                    "down for long. Each gateway restart drops every open session.",
    ),
    Alert(
        # The gauge is 0 from start until the model is loaded; a load that
        # fails exits the process (then VoiceComponentDown fires too). Only
        # the speech services load models: the job selector keeps any other
        # process that happens to export the gauge (an older gateway did,
        # as a constant 0) from paging.
        name="VoiceModelNotLoaded",
        expr=f'voice_model_loaded{{job=~"{SPEECH_JOBS}"}} == 0',
        for_="5m",
        severity="page",
        summary="{{ $labels.service }} ({{ $labels.variant }}) has not loaded model {{ $labels.model }}",
        description="voice_model_loaded has been 0 for 5 minutes on {{ $labels.instance }}: "
                    "the model is missing, corrupt or does not fit; the process is NOT_SERVING.",
    ),
    Alert(
        name="VoiceStreamsSaturated",
        expr=("sum by (job, instance, service, variant) (voice_rpc_in_flight)\n"
              "  / on (job, instance, service, variant)\n"
              "max by (job, instance, service, variant) (voice_stream_capacity) > 0.9"),
        for_="5m",
        severity="ticket",
        summary="{{ $labels.service }} ({{ $labels.variant }}) serves over 90 % of its stream slots",
        description="In-flight streams on {{ $labels.instance }} are at {{ $value | humanizePercentage }} "
                    "of max_streams; new streams get RESOURCE_EXHAUSTED.",
    ),
    Alert(
        name="VoiceCPUSaturated",
        expr=f'rate(process_cpu_seconds_total{{job=~"{ALL_JOBS}"}}[5m]) > {0.9 * CPU_CORES_PER_PROCESS}',
        for_="10m",
        severity="ticket",
        summary="{{ $labels.job }} on {{ $labels.instance }} uses {{ $value | humanize }} CPU cores",
        description=f"The process has used more than {0.9 * CPU_CORES_PER_PROCESS:g} cores for 10 "
                    "minutes: inference queues and latency grows.",
    ),
    Alert(
        name="VoiceMemoryHigh",
        expr=f'process_resident_memory_bytes{{job=~"{ALL_JOBS}"}} > {MEMORY_BYTES_LIMIT}',
        for_="10m",
        severity="ticket",
        summary="{{ $labels.job }} on {{ $labels.instance }} holds {{ $value | humanize1024 }}B resident",
        description="Resident memory has stayed above the limit for 10 minutes (leak or oversized model).",
    ),
    Alert(
        name="VoiceGatewayQueueBacklog",
        expr=f"max by (job, instance, queue) (voice_gateway_queue_depth) > {QUEUE_DEPTH_LIMIT}",
        for_="1m",
        severity="page",
        summary="Gateway queue {{ $labels.queue }} is {{ $value }} deep on {{ $labels.instance }}",
        description="A per-session queue stays deep: its consumer has stalled and replies arrive late.",
    ),
    Alert(
        name="VoiceGrpcErrorRatioHigh",
        expr=("sum by (job, service, method) (rate(voice_rpc_errors_total[5m]))\n"
              "  / sum by (job, service, method) (rate(voice_rpc_requests_total[5m])) "
              f"> {GRPC_ERROR_RATIO_LIMIT}"),
        for_="5m",
        severity="page",
        summary="{{ $labels.service }} {{ $labels.method }}: {{ $value | humanizePercentage }} of RPCs fail",
        description="RPC errors (CANCELLED from barge-in excluded) above 5 % for 5 minutes.",
    ),
    Alert(
        # Canary and stable serve side by side; a canary failing twice as
        # often as stable (and noticeably) should be rolled back before the
        # SLO notices. Stable with no errors has no error series: `or` fills 0.
        name="VoiceCanaryErrorRatioHigh",
        expr=(f"{_ratio('canary')} > {CANARY_MIN_ERROR_RATIO}\n"
              f"and on (service)\n{_ratio('canary')} > 2 * ({_ratio('stable')}\n"
              "  or on (service) 0 * sum by (service) (rate(voice_rpc_requests_total{variant=\"stable\"}[10m])))"),
        for_="10m",
        severity="page",
        summary="Canary {{ $labels.service }} fails {{ $value | humanizePercentage }} of RPCs, "
                "over twice stable",
        description="The canary release of {{ $labels.service }} errs more than stable: roll it back.",
    ),
    Alert(
        # The release controller already set the canary's weight to 0 (users
        # are protected: a ticket, not a page); someone must read the
        # decision and tell the release's authors. Gateways mirror the state
        # from Redis, so it stays firing until the next release starts.
        name="VoiceReleaseRolledBack",
        expr='max by (backend) (voice_release_state{state="rolled_back"}) == 1',
        for_="1m",
        severity="ticket",
        summary="The {{ $labels.backend }} canary release was rolled back by the release judge",
        description="The judge failed the {{ $labels.backend }} canary (latency, failures or quality "
                    "against stable) and set its weight to 0: `python -m release events --service "
                    "{{ $labels.backend }}` says which rule and values.",
    ),
    Alert(
        name="VoiceGatewayBackendErrors",
        expr="sum by (job, backend) (rate(voice_gateway_backend_errors_total[5m])) > 0.1",
        for_="5m",
        severity="ticket",
        summary="Gateway calls to {{ $labels.backend }} fail ({{ $value | humanize }}/s)",
        description="The gateway sees its calls to a backend fail (down, timeout) for 5 minutes.",
    ),
    Alert(
        # The assistant's ears: without the VAD or the ASR no turn exists, so
        # the turn SLOs cannot see the outage (the asr-down drill took 55 s to
        # be noticed, and only by the 5-minute ticket above). Every session
        # retries its streams at least every 4 s while they fail (15 a minute),
        # so 3 failures a minute for 2 minutes is an outage; one reset stream
        # (a single failure, healed in under a second) never fires it, even
        # with the tests' shortened `for:`.
        name="VoiceSpeechInputFailing",
        expr='sum by (job, backend) (increase(voice_gateway_backend_errors_total{backend=~"vad|asr"}[1m])) >= 3',
        for_="2m",
        severity="page",
        summary="The gateway cannot reach its {{ $labels.backend }}: people speak and are not heard",
        description="Sessions' {{ $labels.backend }} streams fail and are retried: no speech is detected "
                    "or transcribed, so there are no turns and the turn SLOs stay silent.",
    ),
    Alert(
        # Admission control protects the admitted sessions' SLO by refusing
        # the rest (`server_busy`, services/gateway/admission.py), so the
        # turn SLOs stay green while people are turned away: only this alert
        # sees them. Refusals while draining (a rollout) are not counted.
        name="VoiceSessionsRefused",
        expr=('sum by (job) (increase(voice_gateway_sessions_refused_total{reason="limit"}[5m])) '
              f">= {REFUSED_PER_5M_LIMIT}"),
        for_="10m",
        severity="ticket",
        summary="Gateways turn people away: {{ $value | humanize }} connection attempts refused in 5 minutes",
        description="New sessions get server_busy at connect (the GATEWAY_MAX_SESSIONS limit) for 10 "
                    "minutes: the admitted ones keep their latency, the others cannot talk. Add "
                    "gateway and speech replicas (capacity per host: docs/capacity.md).",
    ),
    Alert(
        name="VoiceRedisFailures",
        expr="sum by (job, op) (rate(voice_gateway_redis_failures_total[5m])) > 0",
        for_="10m",
        severity="ticket",
        summary="Gateway Redis {{ $labels.op }} operations fail",
        description="Session state cannot be stored: reconnecting clients lose their conversation.",
    ),
)
