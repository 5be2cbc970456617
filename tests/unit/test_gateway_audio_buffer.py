"""The client's output audio buffer, as the server announces it: each
response's ``output_audio_buffer.started`` is closed exactly once, by
``stopped`` (played to its end) or ``cleared`` (cut or paused; a resume
starts it again). A client that counts them (the page, the e2e tests'
"nothing is playing" wait) waits for ever on a start left open, and is out
of step after a close sent twice. Before, a reply paused by a cough (so
cleared) whose TTS then died was also stopped, and a cut that came without
a pause closed nothing. On a virtual clock."""
from __future__ import annotations

from tests.unit.test_gateway_turns import QUESTION, session


def buffer_story(s) -> dict[str, list[str]]:
    """Each response's output_audio_buffer events, in order."""
    out: dict[str, list[str]] = {}
    for e in s.events:
        if e.type.startswith("output_audio_buffer."):
            out.setdefault(e.event["response_id"], []).append(e.type.rsplit(".", 1)[-1])
    return out


async def test_a_paused_reply_that_fails_is_not_stopped_after_it_was_cleared():
    # The reply plays from ~3 s; a cough from 5.0 s pauses it; its TTS dies while it is paused.
    async with session([(0.5, 2.5), (5.0, 5.25)], [QUESTION, ""]) as s:
        await s.run_audio(5.2)
        rid = s.first("output_audio_buffer.cleared").event["response_id"]
        s.b.tts.kill()
        await s.run_audio(10.0)
        assert [d.event["response"]["status"] for d in s.of("response.done")] == ["failed"]
        assert buffer_story(s) == {rid: ["started", "cleared"]}


async def test_a_reply_cut_without_a_pause_is_cleared_once_before_its_done():
    async with session([(0.5, 2.5)], [QUESTION]) as s:
        await s.run_audio(4.0)                       # the reply is playing
        resp = s.conv.response
        assert resp is not None and not resp.paused
        await resp.cancel("turn_detected")           # a cut no speech start paused first
        await s.wait(12.0)
        story = [e.type for e in s.events if e.type in ("output_audio_buffer.cleared", "response.done")]
        assert story == ["output_audio_buffer.cleared", "response.done"], story
        assert s.first("response.done").event["response"]["status"] == "cancelled"
        assert buffer_story(s) == {resp.id: ["started", "cleared"]}


async def test_a_paused_reply_that_resumes_and_plays_out_is_stopped_once():
    # A cough over the reply pauses it; no word came, so it resumes and plays to its end.
    async with session([(0.5, 2.5), (5.0, 5.25)], [QUESTION, ""]) as s:
        await s.run_audio(25.0)
        [done] = s.of("response.done")
        assert done.event["response"]["status"] == "completed"
        assert buffer_story(s) == {done.event["response"]["id"]: ["started", "cleared", "started", "stopped"]}
