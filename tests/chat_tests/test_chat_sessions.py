"""The chat session store (talker.chat_sessions): history bounded by turns, characters, sessions and idle time."""

from __future__ import annotations

import pytest
from talker.chat_sessions import ChatSessionStore


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_sessions_keep_the_history_in_order_for_the_llm() -> None:
    store = ChatSessionStore()
    session = store.open()
    assert session.conversation("你好") == [{"role": "user", "content": "你好"}]
    store.record_turn(session, "你好", "你好！有什么可以帮你？")
    store.record_turn(session, "Tell me a joke.", "")  # barge-in before any word: the question stays
    assert store.open(session.session_id).conversation("Again?") == [
        {"role": "user", "content": "你好"}, {"role": "assistant", "content": "你好！有什么可以帮你？"},
        {"role": "user", "content": "Tell me a joke."}, {"role": "user", "content": "Again?"}]


def test_sessions_keep_only_the_last_turns() -> None:
    store = ChatSessionStore(max_turns=3)
    session = store.open()
    for i in range(5):
        store.record_turn(session, f"q{i}", f"a{i}")
    assert [turn.user for turn in session.turns] == ["q2", "q3", "q4"]


def test_sessions_keep_at_most_max_chars_dropping_the_oldest_turns() -> None:
    store = ChatSessionStore(max_chars=20)
    session = store.open()
    store.record_turn(session, "12345", "67890")  # 10
    store.record_turn(session, "abcde", "fghij")  # 20
    assert session.chars == 20 and len(session.turns) == 2
    store.record_turn(session, "x", "y")  # 22: the oldest goes
    assert [turn.user for turn in session.turns] == ["abcde", "x"] and session.chars == 12
    store.record_turn(session, "u" * 15, "v" * 30)  # one turn over the bound alone: kept, cut to fit
    assert session.chars == 20 and session.turns[-1].user == "u" * 15 and session.turns[-1].assistant == "v" * 5
    assert len(session.turns) == 1


def test_sessions_evict_the_least_recently_used_when_full() -> None:
    clock = Clock()
    store = ChatSessionStore(max_sessions=2, clock=clock)
    a = store.open()
    clock.now += 1
    b = store.open()
    clock.now += 1
    assert store.open(a.session_id) is a  # a is now the most recent
    c = store.open()
    assert b.session_id not in store and a.session_id in store and c.session_id in store
    assert len(store) == 2 and store.evicted == 1


def test_sessions_expire_after_the_idle_ttl_and_an_unknown_id_gets_a_new_session() -> None:
    clock = Clock()
    store = ChatSessionStore(idle_ttl_s=60, clock=clock)
    old = store.open()
    store.record_turn(old, "hi", "hello")
    clock.now += 59.9
    assert store.open(old.session_id) is old  # touched: idle time starts again
    clock.now += 59.9
    assert store.get(old.session_id) is old
    clock.now += 0.2
    assert store.get(old.session_id) is None and len(store) == 0
    fresh = store.open(old.session_id)
    assert fresh.session_id != old.session_id and fresh.turns == []  # never a session named by the client
    assert store.open("made-up-id").session_id != "made-up-id"


def test_sessions_ids_are_unguessable_and_bounds_validated() -> None:
    store = ChatSessionStore()
    ids = {store.open().session_id for _ in range(100)}
    assert len(ids) == 100 and all(len(i) >= 20 for i in ids)
    with pytest.raises(ValueError):
        ChatSessionStore(max_turns=0)
