"""The drills, as data: what fault each injects (through the gateway's
/admin/faults, so a `make run` stack is broken only in ways that end by
themselves), for how long, where on-call should look (dashboard and panel),
which alert should fire, which runbook applies, and what it teaches.

Nothing here kills a process: a drill against a running stack stops and
starts nothing it did not start. "Down" is an injected error on every call
of that backend, which the gateway cannot tell from a dead service."""
from __future__ import annotations

import dataclasses
from typing import Any, NamedTuple

OVERVIEW = "Voice / overview"
GATEWAY = "Voice / stage / gateway"
CANARY = "Voice / canary vs stable"


class Move(NamedTuple):
    """How a fault shows on a panel of look_at (drills/panels.py judges it)."""
    panel: str                 # "dashboard title: panel title"
    way: str                   # "up" | "down" | "above" (the line over the line `than`)
    line: str = ""             # the legend of the line that must move ("" = any line of the panel)
    than: str = ""             # "above": the other line of the panel


@dataclasses.dataclass(frozen=True)
class Scenario:
    name: str
    teaches: str
    faults: tuple[dict[str, Any], ...]   # /admin/faults bodies, without duration_s
    fault_s: float                        # how long the fault lasts (it ends by itself)
    look_at: tuple[str, ...]              # "dashboard: panel"
    alerts: tuple[str, ...]               # any of these going pending counts as detection
    runbook: str                          # docs/runbooks/<name>.md
    users: int = 2                        # spoken conversations kept going meanwhile
    arrivals: int = 0                     # more people who start talking with the fault and leave at its end
    users_at_limit: bool = False          # users = the gateway's session limit (its /readyz), when it has one
    check_history: bool = True            # every item a client saw done must survive the drill
    restarts_gateway: bool = False        # the fault is a gateway restart (by the operator's command)
    settled_metric: str = ""              # recovered only once this gateway gauge is back at 0
    new_session_every: int = 0            # a speaker starts a new conversation after this many turns
    # A release drill (drills/release.py): the drill starts a release of this
    # service and runs the judge; the fault hits only that service's canary.
    release: str = ""
    release_steps: tuple[float, ...] = (50.0, 100.0)
    release_interval_s: float = 120.0
    judge_min_samples: int = 10
    probes: bool = False                  # the judge also runs the quality probes (release/probes.py)
    release_expect: str = "rolled_back"   # what the judge must decide: a bad canary out, a good one promoted
    # Panels of look_at that the fault must move, which way, and on which
    # line: the drill reads them from Prometheus after it (drills/panels.py).
    moves: tuple[Move, ...] = ()

    def fault_bodies(self) -> list[dict[str, Any]]:
        return [{**f, "duration_s": self.fault_s} for f in self.faults]


RELEASE_PANELS = (f"{CANARY}: Release state", f"{CANARY}: Judge verdicts (15 m)",
                  f"{CANARY}: Release weight (% of new sessions on canary)")


def release_moves(service: str, state: str, verdict: str) -> tuple[Move, ...]:
    """How a release drill shows on RELEASE_PANELS: the state and verdict the judge
    reached for ``service``, and the weight it was given."""
    state_panel, verdict_panel, weight_panel = RELEASE_PANELS
    return (Move(state_panel, "up", f"{service} {state}"), Move(verdict_panel, "up", f"{service} {verdict}"),
            Move(weight_panel, "up", service))


SCENARIOS: dict[str, Scenario] = {s.name: s for s in (
    Scenario(
        name="asr-slow",
        teaches="A slow stage shows in the latency SLO before anything fails: find which stage from the "
                "stage breakdown, not from the error panels (they stay flat).",
        faults=({"service": "asr", "kind": "latency", "latency_ms": 1500},),
        fault_s=120,
        look_at=(f"{OVERVIEW}: Which stage is slow (p95 by stage)", f"{GATEWAY}: Stage latency p95",
                 f"{OVERVIEW}: Burn rate (1 h, page at 14.4)"),
        alerts=("VoiceTurnLatencyErrorBudgetBurnFast",),
        runbook="VoiceTurnLatencyErrorBudgetBurnFast",
        moves=(Move(f"{OVERVIEW}: Which stage is slow (p95 by stage)", "up", "asr_final"),
               Move(f"{GATEWAY}: Stage latency p95", "up", "asr_final"),
               Move(f"{OVERVIEW}: Burn rate (1 h, page at 14.4)", "up", "voice_to_voice_latency")),
    ),
    Scenario(
        name="asr-down",
        teaches="Losing the ASR mid-utterance: each session gets one backend_unavailable error naming the "
                "ASR, its streams reopen with backoff, and turn-taking comes back by itself, without the "
                "client reconnecting.",
        faults=({"service": "asr", "kind": "reset", "after_messages": 1},),
        # Longer than the ticket's 5 min `for:` too: without words there is no
        # turn, so the turn SLO does not see this outage; only the backend errors do.
        fault_s=360,
        look_at=(f"{GATEWAY}: Backend failures", f"{GATEWAY}: Error events by code"),
        alerts=("VoiceSpeechInputFailing", "VoiceGatewayBackendErrors"),
        runbook="VoiceSpeechInputFailing",
        moves=(Move(f"{GATEWAY}: Backend failures", "up", "asr"),
               Move(f"{GATEWAY}: Error events by code", "up", "backend_unavailable")),
    ),
    Scenario(
        name="llm-hung",
        teaches="A backend that accepts calls and never answers: nothing is 'down', only the idle deadline "
                "(GATEWAY_BACKEND_IDLE_TIMEOUT_S) turns the hang into an error; after enough in a row the "
                "circuit opens and turns fail fast instead of each waiting the deadline out.",
        faults=({"service": "llm", "kind": "hang"},),
        fault_s=60,
        look_at=(f"{GATEWAY}: Turns by outcome", f"{GATEWAY}: Backend failures",
                 f"{OVERVIEW}: Turn error ratio (5m)"),
        alerts=("VoiceTurnErrorsErrorBudgetBurnFast", "VoiceGatewayBackendErrors"),
        runbook="VoiceTurnErrorsErrorBudgetBurnFast",
        moves=(Move(f"{GATEWAY}: Turns by outcome", "up", "failed"), Move(f"{GATEWAY}: Backend failures", "up", "llm"),
               Move(f"{OVERVIEW}: Turn error ratio (5m)", "up")),
    ),
    Scenario(
        name="vad-hung",
        teaches="The assistant's ears hang: the VAD accepts audio and answers nothing, so nobody is heard "
                "and no turn starts (the turn SLOs see nothing). Only the VAD's missing progress "
                "(GATEWAY_VAD_IDLE_TIMEOUT_S) turns the hang into stream failures; the speech-input page "
                "fires and the streams reopen by themselves once the VAD answers again.",
        faults=({"service": "vad", "kind": "hang"},),
        fault_s=60,
        look_at=(f"{GATEWAY}: Backend failures", f"{GATEWAY}: Error events by code"),
        alerts=("VoiceSpeechInputFailing", "VoiceGatewayBackendErrors"),
        runbook="VoiceSpeechInputFailing",
        moves=(Move(f"{GATEWAY}: Backend failures", "up", "vad"),
               Move(f"{GATEWAY}: Error events by code", "up", "backend_unavailable")),
    ),
    Scenario(
        name="tts-errors",
        teaches="A partial failure (20 % of TTS calls): most turns work, some end failed with an error "
                "naming the TTS; the history keeps only what was spoken.",
        faults=({"service": "tts", "kind": "error", "rate": 0.2},),
        fault_s=120,
        look_at=(f"{GATEWAY}: Backend failures", f"{GATEWAY}: Turns by outcome",
                 f"{OVERVIEW}: Turn error ratio (5m)"),
        alerts=("VoiceGatewayBackendErrors", "VoiceTurnErrorsErrorBudgetBurnFast"),
        runbook="VoiceGatewayBackendErrors",
        moves=(Move(f"{GATEWAY}: Backend failures", "up", "tts"), Move(f"{GATEWAY}: Turns by outcome", "up", "failed"),
               Move(f"{OVERVIEW}: Turn error ratio (5m)", "up")),
    ),
    Scenario(
        name="redis-down",
        teaches="The session store lost: conversations carry on from memory, every failed write is "
                "counted, and what was said meanwhile is written back when Redis answers again.",
        faults=({"service": "redis", "kind": "error"},),
        fault_s=660,          # longer than the alert's 10 min `for:` (sessions go on meanwhile)
        look_at=(f"{GATEWAY}: Redis failures",),
        alerts=("VoiceRedisFailures",),
        runbook="VoiceRedisFailures",
        moves=(Move(f"{GATEWAY}: Redis failures", "up", "failures/s"),),
        # Turns work throughout: recovered means everything said meanwhile is in Redis.
        settled_metric="voice_gateway_store_pending_sessions",
    ),
    Scenario(
        name="gateway-restart",
        teaches="A gateway restart (a deploy, a crash): open sessions are closed, clients reconnect with "
                "their session id and carry on with their history (it was in Redis), nothing is lost.",
        faults=(),
        fault_s=0,
        look_at=(f"{OVERVIEW}: Restarts (15 m)", f"{GATEWAY}: Sessions and limit", f"{OVERVIEW}: Components up",
                 f"{GATEWAY}: Redis failures"),
        alerts=("VoiceComponentDown",),
        runbook="VoiceComponentDown",
        # A restart of a second is over between two scrapes: up may never be 0,
        # the process's start time changes.
        moves=(Move(f"{OVERVIEW}: Restarts (15 m)", "up", "gateway"),),
        restarts_gateway=True,
    ),
    Scenario(
        name="overload",
        teaches="More people than capacity: the sessions beyond GATEWAY_MAX_SESSIONS get server_busy at "
                "once (with a retry hint) and the admitted ones keep their latency. Nobody admitted is "
                "harmed, so nothing pages; the people turned away open a ticket to add capacity.",
        faults=(),
        fault_s=60,
        look_at=(f"{GATEWAY}: Sessions refused (server_busy)", f"{GATEWAY}: Sessions and limit",
                 f"{OVERVIEW}: Voice to voice p50 / p95 / p99"),
        alerts=("VoiceSessionsRefused",),
        runbook="VoiceSessionsRefused",
        moves=(Move(f"{GATEWAY}: Sessions refused (server_busy)", "up", "limit"),),
        users=3,          # without a limit to read; else the gateway's GATEWAY_MAX_SESSIONS
        users_at_limit=True,  # all admitted before the fault, so the arrivals are the ones over it
        arrivals=2,
    ),
    Scenario(
        name="canary-bad",
        teaches="A bad release is caught by the judge, not by a person: a TTS canary answering 1.5 s late "
                "takes half of the new conversations; the release judge fails its latency rule, sets the "
                "canary's weight to 0 at once and the rollback ticket fires. Nobody is paged; the decision, "
                "its rule and values are in `make release-events SERVICE=tts`.",
        faults=({"service": "tts", "kind": "latency", "latency_ms": 1500, "variant": "canary"},),
        fault_s=600,          # the most it lasts: it ends once the judge decided (and its alert fired)
        look_at=(f"{CANARY}: Release state", f"{CANARY}: Judge verdicts (15 m)",
                 f"{CANARY}: Voice to voice p95", f"{CANARY}: Release weight (% of new sessions on canary)"),
        alerts=("VoiceReleaseRolledBack",),
        runbook="VoiceReleaseRolledBack",
        moves=(Move(f"{CANARY}: Release state", "up", "tts rolled_back"),
               Move(f"{CANARY}: Judge verdicts (15 m)", "up", "tts fail"),
               Move(f"{CANARY}: Voice to voice p95", "above", "canary", than="stable"),
               Move(f"{CANARY}: Release weight (% of new sessions on canary)", "up", "tts")),
        new_session_every=2,
        release="tts",
    ),
    Scenario(
        name="canary-good",
        teaches="A release that is no worse goes all the way by itself: a TTS canary (here the same voice "
                "and settings as stable) takes 50 % of the new conversations, then 100 %; at each step the "
                "judge compares the canary's turns with stable's, finds nothing worse and steps on, and the "
                "release is promoted. Nobody is paged and no alert fires; the decisions, with their values, "
                "are in `make release-events SERVICE=tts`. (The drill then withdraws the canary: it leaves "
                "nothing serving that it started.)",
        faults=(),            # nothing is injected: the canary pool is as good as stable
        fault_s=600,          # the most the drill waits for the judge
        look_at=RELEASE_PANELS,
        alerts=(),
        runbook="VoiceReleaseRolledBack",
        moves=release_moves("tts", "promoted", "pass"),
        new_session_every=2,
        release="tts",
        release_interval_s=30.0,   # judged as soon as the canary has its turns; holds until then
        release_expect="promoted",
    ),
    Scenario(
        name="canary-asr-worse",
        teaches="A canary that is fast but worse: an ASR release of a smaller model (Whisper tiny.en in place "
                "of base) takes half of the new conversations. Latency looks fine and no call fails; only the "
                "judge's quality probes (the evaluation set through canary and stable) find it, at the step's "
                "check time, and roll it back.",
        faults=(),            # nothing is injected: the canary pool runs the worse model
        fault_s=600,          # the most the drill waits for the judge
        look_at=RELEASE_PANELS,
        alerts=("VoiceReleaseRolledBack",),
        runbook="VoiceReleaseRolledBack",
        moves=release_moves("asr", "rolled_back", "fail"),
        new_session_every=2,
        release="asr",
        release_interval_s=60.0,
        probes=True,
    ),
)}
