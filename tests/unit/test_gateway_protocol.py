"""The Realtime protocol through the real FastAPI app (fake engines).

Invariants: every malformed or invalid client event gets an ``error`` event
that names what was wrong and echoes the offending event_id, and the session
stays usable afterwards; input audio beyond the queue bound is refused, not
buffered; a client that stops reading is cut off at the outbox bound;
/healthz names the backends that are not SERVING; a text conversation runs
the full response event sequence."""
from __future__ import annotations

import base64
import json
import re

import pytest
from fastapi.testclient import TestClient

from common.clock import MonotonicClock
from services.gateway.app import create_app
from services.gateway.fakes import FakeBackends, FakeProvider
from services.gateway.scripted import ScriptedSession
from services.gateway.settings import GatewaySettings

MAX = 64 * 1024


@pytest.fixture
def provider():
    clock = MonotonicClock()
    return FakeProvider(lambda sid: FakeBackends.create(clock, replies=("Hello there. How are you?",)))


@pytest.fixture
def client(provider):
    app = create_app(GatewaySettings(redis_url="", max_message_bytes=MAX, input_queue_ms=500,
                                     web_dir="/nonexistent"), backends=provider)
    with TestClient(app) as c:
        yield c


def recv_until(ws, type_: str, limit: int = 500) -> list[dict]:
    out = []
    for _ in range(limit):
        ev = ws.receive_json()
        out.append(ev)
        if ev["type"] == type_:
            return out
    raise AssertionError(f"no {type_} in {[e['type'] for e in out][:50]}")


def still_usable(ws) -> None:
    ws.send_json({"type": "conversation.item.create", "item": {
        "type": "message", "role": "user", "content": [{"type": "input_text", "text": "ping"}]}})
    assert recv_until(ws, "conversation.item.added")[-1]["item"]["content"][0]["text"] == "ping"


def b64(n_bytes: int) -> str:
    return base64.b64encode(b"\x00" * n_bytes).decode()


BAD = [
    ("{not json", "invalid_json", "not valid JSON"),
    ("[1, 2]", "invalid_event", "JSON object"),
    (json.dumps({"event_id": "e1"}), "missing_required_parameter", "'type'"),
    (json.dumps({"type": "session.fly", "event_id": "e2"}), "unknown_event_type", "session.fly"),
    (json.dumps({"type": "input_audio_buffer.append", "event_id": "e3"}), "missing_required_parameter", "'audio'"),
    (json.dumps({"type": "input_audio_buffer.append", "audio": "@@@not base64", "event_id": "e4"}),
     "invalid_base64", "base64"),
    (json.dumps({"type": "input_audio_buffer.append", "audio": b64(3), "event_id": "e5"}),
     "invalid_audio_format", "odd count"),
    (json.dumps({"type": "input_audio_buffer.append", "audio": b64(MAX), "event_id": "e6"}),
     "message_too_large", "over the limit"),
    (json.dumps({"type": "session.update", "event_id": "e7",
                 "session": {"audio": {"input": {"format": {"type": "audio/pcm", "rate": 44100}}}}}),
     "unsupported_audio_format", "44100"),
    (json.dumps({"type": "session.update", "event_id": "e8",
                 "session": {"audio": {"input": {"format": {"type": "audio/pcmu"}}}}}),
     "unsupported_audio_format", "audio/pcmu"),
    (json.dumps({"type": "session.update", "event_id": "e9",
                 "session": {"audio": {"input": {"turn_detection": {"type": "server_vad", "threshold": 7}}}}}),
     "invalid_value", "threshold"),
    (json.dumps({"type": "session.update", "event_id": "e10", "session": {"output_modalities": ["video"]}}),
     "invalid_value", "output_modalities"),
    (json.dumps({"type": "conversation.item.truncate", "item_id": "item_x", "audio_end_ms": 10,
                 "event_id": "e11"}), "item_not_found", "item_x"),
    (json.dumps({"type": "conversation.item.truncate", "item_id": "item_x", "audio_end_ms": "ten",
                 "event_id": "e12"}), "invalid_type", "audio_end_ms"),
    (json.dumps({"type": "conversation.item.delete", "item_id": "item_y", "event_id": "e13"}),
     "item_not_found", "item_y"),
    (json.dumps({"type": "conversation.item.create", "event_id": "e14",
                 "item": {"type": "message", "role": "robot", "content": []}}), "invalid_value", "robot"),
    (json.dumps({"type": "response.cancel", "event_id": "e15"}), "response_cancel_not_active", "no response"),
    (json.dumps({"type": "input_audio_buffer.commit", "event_id": "e16"}),
     "input_audio_buffer_commit_empty", "empty"),
    # These closed the socket (1011) before: the decoder's RecursionError, Python's
    # 4300-digit integer limit, a float that overflows to infinity.
    ('{"type": "session.update", "event_id": "e17", "session": ' + "[" * 20_000 + "]" * 20_000 + "}",
     "invalid_json", "nested more than 32 levels"),
    ('{"type": "session.update", "event_id": "e18", "session": {"tools": ' + "[" * 40 + "]" * 40 + "}}",
     "invalid_json", "nested more than 32 levels"),
    ('{"type": "conversation.item.truncate", "event_id": "e19", "item_id": "x", "audio_end_ms": '
     + "9" * 5000 + "}", "invalid_json", "5000 digits"),
    ('{"type": "conversation.item.truncate", "event_id": "e20", "item_id": "x", "audio_end_ms": 1e309}',
     "invalid_json", "1e309 is out of range"),
    ('{"type": "conversation.item.truncate", "event_id": "e21", "item_id": "x", "audio_end_ms": NaN}',
     "invalid_json", "NaN is not a JSON number"),
    (json.dumps({"type": "response.create", "event_id": "e22", "response": {"max_output_tokens": 2 ** 40}}),
     "invalid_value", "response.max_output_tokens"),
    (json.dumps({"type": "response.create", "event_id": "e23", "response": {"max_output_tokens": "lots"}}),
     "invalid_value", "response.max_output_tokens"),
]


@pytest.mark.parametrize("raw,code,words", BAD, ids=[b[1] + "-" + str(i) for i, b in enumerate(BAD)])
def test_bad_input_gets_an_error_and_the_session_goes_on(client, raw, code, words):
    with client.websocket_connect("/v1/realtime?model=local") as ws:
        assert ws.receive_json()["type"] == "session.created"
        ws.send_text(raw)
        err = recv_until(ws, "error")[-1]["error"]
        assert err["code"] == code
        assert words in err["message"]
        sent = re.search(r'"event_id": "(\w+)"', raw)
        if sent:   # named even when the message could not be decoded
            assert err["event_id"] == sent.group(1)
        still_usable(ws)


def test_response_max_output_tokens_reaches_the_llm(client, provider):
    with client.websocket_connect("/v1/realtime") as ws:
        sid = ws.receive_json()["session"]["id"]
        ws.send_json({"type": "session.update", "session": {"output_modalities": ["text"], "max_output_tokens": 20}})
        recv_until(ws, "session.updated")
        for mot in (7, None, "inf"):
            ws.send_json({"type": "response.create", "response": {"max_output_tokens": mot}})
            assert recv_until(ws, "response.done")[-1]["response"]["status"] == "completed"
    # None: the session's 20; "inf": the gateway's own limit (llm_max_tokens).
    assert provider.sessions[sid].llm.max_tokens == [7, 20, GatewaySettings().llm_max_tokens]


def test_text_conversation_runs_the_full_response_sequence(client):
    with client.websocket_connect("/v1/realtime", headers={"Authorization": "Bearer anything"}) as ws:
        created = ws.receive_json()
        assert created["session"]["type"] == "realtime"
        assert created["session"]["audio"]["input"]["format"] == {"type": "audio/pcm", "rate": 24000}
        ws.send_json({"type": "session.update", "session": {"type": "realtime", "output_modalities": ["text"],
                                                            "instructions": "Be brief."}})
        upd = recv_until(ws, "session.updated")[-1]["session"]
        assert upd["output_modalities"] == ["text"] and upd["instructions"] == "Be brief."
        still_usable(ws)
        ws.send_json({"type": "response.create"})
        evs = recv_until(ws, "response.done")
        evs = evs[[e["type"] for e in evs].index("response.created"):]
        types = [e["type"] for e in evs]
        assert types.index("response.output_item.added") < types.index("response.output_text.delta") \
            < types.index("response.output_text.done") < types.index("response.done")
        assert "response.output_audio.delta" not in types
        text = "".join(e["delta"] for e in evs if e["type"] == "response.output_text.delta")
        assert text == "Hello there. How are you?"
        done = evs[-1]["response"]
        assert done["status"] == "completed" and done["object"] == "realtime.response"
        assert done["output"][0]["content"][0] == {"type": "output_text", "text": text}
        assert all("event_id" in e for e in evs)


def test_audio_response_is_resampled_to_the_session_rate(client):
    with client.websocket_connect("/v1/realtime") as ws:
        ws.receive_json()
        ws.send_json({"type": "session.update", "session": {
            "audio": {"output": {"format": {"type": "audio/pcm", "rate": 16000}}}}})
        recv_until(ws, "session.updated")
        still_usable(ws)
        ws.send_json({"type": "response.create"})
        evs = recv_until(ws, "response.done")
        pcm = b"".join(base64.b64decode(e["delta"]) for e in evs if e["type"] == "response.output_audio.delta")
        # The fake speaks 60 ms per character; at 16 kHz that is 1920 bytes per character.
        chars = len("Hello there.") + len("How are you?")
        assert abs(len(pcm) / 32 - chars * 60) < 60
        transcript = [e for e in evs if e["type"] == "response.output_audio_transcript.done"][0]["transcript"]
        assert transcript == "Hello there. How are you?"
        assert recv_until(ws, "output_audio_buffer.stopped")


def test_input_faster_than_real_time_is_refused_beyond_the_queue(client, provider):
    with client.websocket_connect("/v1/realtime") as ws:
        sid = ws.receive_json()["session"]["id"]
        provider.sessions[sid].vad.stalled = True        # the VAD stops keeping up
        chunk = b64(4800)                                # 100 ms at 24 kHz
        for i in range(20):
            ws.send_json({"type": "input_audio_buffer.append", "audio": chunk, "event_id": f"a{i}"})
        errs = []
        while len(errs) < 5:
            ev = ws.receive_json()
            if ev["type"] == "error":
                errs.append(ev["error"])
        assert all(e["code"] == "input_audio_queue_full" for e in errs)
        assert "limit 500 ms" in errs[0]["message"]
        provider.sessions[sid].vad.stalled = False
        still_usable(ws)


async def test_a_client_that_never_reads_is_cut_off_at_the_outbox_bound():
    s = ScriptedSession(settings=GatewaySettings(redis_url="", outbox_max_events=40), replies=(
        "One two three four five six seven eight nine ten. " * 6,))
    s.conv.start()
    try:
        await s.conv.handle({"type": "conversation.item.create", "item": {
            "type": "message", "role": "user", "content": [{"type": "input_text", "text": "count"}]}})
        await s.conv.handle({"type": "response.create"})
        await s.wait(30.0)
        assert len(s.conv.outbox) <= 40
        assert s.conv.outbox.overflowed
        assert await s.conv.outbox.get() is None   # the writer stops and closes the socket
    finally:
        await s.conv.close()


def test_healthz_names_backends_that_are_not_serving():
    app = create_app(GatewaySettings(redis_url="", vad_addrs="127.0.0.1:1", asr_addrs="127.0.0.1:2",
                                     llm_addrs="127.0.0.1:3", rag_addrs="127.0.0.1:4", tts_addrs="127.0.0.1:5",
                                     web_dir="/nonexistent"))
    with TestClient(app) as c:
        r = c.get("/healthz")
        assert r.status_code == 503
        body = r.json()
        assert set(body["not_serving"]) == {"vad", "asr", "llm", "rag", "tts"}
        assert body["not_serving"]["asr"] == {"127.0.0.1:2": "UNAVAILABLE"}


def test_healthz_ok_and_metrics(client):
    assert client.get("/healthz").status_code == 200
    with client.websocket_connect("/v1/realtime") as ws:
        ws.receive_json()
        ws.send_text("{oops")
        recv_until(ws, "error")
    text = client.get("/metrics").text
    for name in ("voice_gateway_active_sessions", "voice_gateway_ws_messages_total",
                 "voice_gateway_errors_total", "voice_gateway_canary_sessions_total"):
        assert name in text
    assert 'voice_gateway_errors_total{code="invalid_json"' in text


def test_static_client_is_served_at_root(tmp_path, provider):
    (tmp_path / "index.html").write_text("<html>voice</html>")
    (tmp_path / "app.js").write_text("console.log(1)")
    app = create_app(GatewaySettings(redis_url="", web_dir=str(tmp_path)), backends=provider)
    with TestClient(app) as c:
        assert c.get("/").text == "<html>voice</html>"
        assert c.get("/app.js").status_code == 200
        assert c.get("/healthz").status_code == 200


@pytest.mark.parametrize("has_docs", [True, False])
def test_retrieval_is_on_by_default_only_when_documents_exist(has_docs):
    from services.gateway.backends.types import Passage

    clock = MonotonicClock()
    docs = [Passage("faq.md", "Opening hours", "We open at nine.", 0.8),
            Passage("faq.md", "Parking", "Park behind the shop.", 0.1)] if has_docs else []
    provider = FakeProvider(lambda sid: FakeBackends.create(clock, passages=docs, replies=("We open at nine.",)))
    # (the fake RAG returns these for any words: the "outside the documents" rule is off)
    app = create_app(GatewaySettings(redis_url="", web_dir="/nonexistent", rag_decline_below=0.0), backends=provider)
    with TestClient(app) as c, c.websocket_connect("/v1/realtime") as ws:
        session = ws.receive_json()["session"]
        assert session["retrieval"]["enabled"] is has_docs
        still_usable(ws)
        ws.send_json({"type": "response.create"})
        done = recv_until(ws, "response.done")[-1]["response"]
        b = provider.sessions[session["id"]]
        if has_docs:
            # Passages under the score floor are not given to the LLM.
            assert [p.title for p in b.llm.passages[-1]] == ["Opening hours"]
            assert json.loads(done["metadata"]["sources"]) == [
                {"source": "faq.md", "title": "Opening hours", "score": 0.8}]
        else:
            assert "sources" not in (done["metadata"] or {})
            assert b.llm.passages[-1] == []


def test_an_out_of_band_response_cut_short_announces_no_conversation_item(client):
    """Found by the protocol state machine: an out-of-band response
    (conversation "none") cleared while speaking sent conversation.item.truncated
    for an item the conversation does not have."""
    with client.websocket_connect("/v1/realtime") as ws:
        ws.receive_json()
        ws.send_json({"type": "response.create", "response": {"conversation": "none",
                                                               "output_modalities": ["audio"]}})
        recv_until(ws, "response.output_audio.delta")
        ws.send_json({"type": "output_audio_buffer.clear"})
        evs = recv_until(ws, "response.done")
        assert evs[-1]["response"]["status"] == "cancelled"
        assert [e for e in evs if e["type"].startswith("conversation.")] == []
        still_usable(ws)


def test_a_response_whose_item_was_deleted_announces_no_conversation_item(client):
    """Found by the protocol state machine: the item of a response in progress
    deleted (by the client, or pushed out by newer items), the response cut
    short then announced truncated and done an item the conversation no longer has."""
    with client.websocket_connect("/v1/realtime") as ws:
        ws.receive_json()
        ws.send_json({"type": "response.create", "response": {"output_modalities": ["audio"]}})
        iid = recv_until(ws, "conversation.item.added")[-1]["item"]["id"]
        recv_until(ws, "response.output_audio.delta")
        ws.send_json({"type": "conversation.item.delete", "item_id": iid})
        recv_until(ws, "conversation.item.deleted")
        ws.send_json({"type": "output_audio_buffer.clear"})
        evs = recv_until(ws, "response.done")
        assert evs[-1]["response"]["status"] == "cancelled"
        assert [e["type"] for e in evs if e["type"].startswith("conversation.")] == []
        still_usable(ws)
