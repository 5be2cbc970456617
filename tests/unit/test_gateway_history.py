"""Invariant: the LLM sees at most ``history_items`` of the latest items, and
the window's start moves in blocks of half the window, so the prompt's
prefix (and the LLM's KV cache of it) stays the same for many turns instead
of changing on every turn once the conversation outgrows the window."""
from __future__ import annotations

from services.gateway.history import window_start


def test_short_conversations_are_whole() -> None:
    assert [window_start(n, 24) for n in (0, 1, 23, 24)] == [0, 0, 0, 0]
    assert window_start(500, 0) == 0          # 0 = no limit


def test_the_window_keeps_between_half_and_all_of_the_limit() -> None:
    for n in range(25, 400):
        kept = n - window_start(n, 24)
        assert 12 < kept <= 24, (n, kept)


def test_the_start_moves_in_blocks_so_the_prefix_is_stable_for_many_turns() -> None:
    starts = [window_start(n, 24) for n in range(0, 200)]
    assert starts == sorted(starts)                        # never moves back
    changes = [n for n in range(1, 200) if starts[n] != starts[n - 1]]
    assert all(b - a == 12 for a, b in zip(changes, changes[1:]))   # once per 12 items (6 turns)
    # The old one-item slide would change the start on every item past the limit.
    assert len(changes) <= (200 - 24) // 12 + 1
