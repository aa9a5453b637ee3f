"""Conversation history in memory, bounded every way: turns and characters per session, sessions, idle time.

    store = ChatSessionStore(max_sessions=1000, max_turns=20, max_chars=8000, idle_ttl_s=1800)
    session = store.open(requested_id)        # that session when it is alive, else a new one (new id)
    conversation = session.conversation(user_text)   # history + the new user message, for LLMClient.stream
    ...
    store.record_turn(session, user_text, reply_text)  # after the answer (the partial one on barge-in)

Session ids are made here (random, unguessable): a client can only resume an id it was given, and an unknown
or expired id opens a new session rather than one named by the client. When the store is full the session
used least recently is evicted. Meant for one event loop (no locks); nothing is persisted.
"""

from __future__ import annotations

import secrets
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field

from talker.llm import ChatMessage


@dataclass
class ChatTurn:
    user: str
    assistant: str

    @property
    def chars(self) -> int:
        return len(self.user) + len(self.assistant)


@dataclass
class ChatSession:
    session_id: str
    last_used: float
    turns: list[ChatTurn] = field(default_factory=list)

    @property
    def chars(self) -> int:
        return sum(turn.chars for turn in self.turns)

    def history(self) -> list[ChatMessage]:
        messages: list[ChatMessage] = []
        for turn in self.turns:
            messages.append({"role": "user", "content": turn.user})
            if turn.assistant:
                messages.append({"role": "assistant", "content": turn.assistant})
        return messages

    def conversation(self, user_text: str) -> list[ChatMessage]:
        """The history followed by the new user message (the system prompt is the LLM client's)."""
        return [*self.history(), {"role": "user", "content": user_text}]


class ChatSessionStore:
    def __init__(
        self,
        *,
        max_sessions: int = 1000,
        max_turns: int = 20,
        max_chars: int = 8000,
        idle_ttl_s: float = 1800.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if min(max_sessions, max_turns, max_chars) < 1 or idle_ttl_s <= 0:
            raise ValueError("session bounds must be positive")
        self.max_sessions, self.max_turns, self.max_chars = max_sessions, max_turns, max_chars
        self.idle_ttl_s = idle_ttl_s
        self.clock = clock
        self._sessions: OrderedDict[str, ChatSession] = OrderedDict()  # least recently used first
        self.evicted = 0  # sessions pushed out by max_sessions (not by the TTL)

    def __len__(self) -> int:
        self.expire()
        return len(self._sessions)

    def __contains__(self, session_id: object) -> bool:
        self.expire()
        return session_id in self._sessions

    def expire(self) -> int:
        """Drop the sessions idle for longer than the TTL; how many went."""
        deadline = self.clock() - self.idle_ttl_s
        gone = 0
        while self._sessions:
            oldest = next(iter(self._sessions.values()))
            if oldest.last_used > deadline:
                break
            del self._sessions[oldest.session_id]
            gone += 1
        return gone

    def open(self, session_id: str | None = None) -> ChatSession:
        """The live session `session_id`, touched; else a new session with a new id."""
        self.expire()
        now = self.clock()
        session = self._sessions.get(session_id) if session_id else None
        if session is None:
            while len(self._sessions) >= self.max_sessions:
                self._sessions.popitem(last=False)
                self.evicted += 1
            session = ChatSession(secrets.token_urlsafe(16), now)
            self._sessions[session.session_id] = session
        else:
            session.last_used = now
            self._sessions.move_to_end(session.session_id)
        return session

    def get(self, session_id: str) -> ChatSession | None:
        """The live session, without touching it."""
        self.expire()
        return self._sessions.get(session_id)

    def record_turn(self, session: ChatSession, user_text: str, assistant_text: str) -> None:
        """Add a finished (or cut short) turn, then drop the oldest turns past max_turns / max_chars."""
        user = user_text[: self.max_chars]
        turn = ChatTurn(user, assistant_text[: self.max_chars - len(user)])
        session.turns.append(turn)
        del session.turns[: max(len(session.turns) - self.max_turns, 0)]
        while session.chars > self.max_chars:
            session.turns.pop(0)
        session.last_used = self.clock()
        if session.session_id in self._sessions:
            self._sessions.move_to_end(session.session_id)

    def close(self, session_id: str) -> None:
        self._sessions.pop(session_id, None)
