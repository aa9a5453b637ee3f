"""API keys and the admin token: exact matches only, every key of the ring honoured, nothing when unset."""

from __future__ import annotations

from talker.credentials import KeyRing, token_matches


def test_talker_credentials_empty_key_ring_is_the_open_demo() -> None:
    ring = KeyRing([])
    assert not ring
    assert not ring.accepts("") and not ring.accepts("anything")


def test_talker_credentials_every_key_of_the_ring_is_accepted() -> None:
    ring = KeyRing(["first-key-1a2b", "second-key-3c4d", "third-key-5e6f"])
    assert ring
    assert all(ring.accepts(key) for key in ("first-key-1a2b", "second-key-3c4d", "third-key-5e6f"))


def test_talker_credentials_near_misses_are_refused() -> None:
    ring = KeyRing(["first-key-1a2b", "second-key-3c4d"])
    for given in ("", "first-key-1a2", "first-key-1a2b ", "first-key-1a2bx", "FIRST-KEY-1A2B", "second-key-3c4",
                  "first-key-1a2bsecond-key-3c4d"):
        assert not ring.accepts(given), given


def test_talker_credentials_admin_token_exact_match_only() -> None:
    assert token_matches("admin-token-7f", "admin-token-7f")
    for given in ("", "admin-token-7", "admin-token-7f ", "Admin-token-7f", "admin-token-7fx"):
        assert not token_matches(given, "admin-token-7f"), given


def test_talker_credentials_unset_admin_token_matches_nothing() -> None:
    assert not token_matches("", None) and not token_matches("None", None) and not token_matches("x", None)
