"""The access-token cache every PSA that logs in shares (``psatriage.psa.tokens``): one fetch at a
time, a renewal before the token is due, one replacement per refusal, and the token with its
refresh token shared by worker processes through the queue's Redis or PostgreSQL."""

from __future__ import annotations

import threading
import time

import httpx
from cryptography.fernet import Fernet
from pydantic import SecretStr

from psatriage.psa.tokens import Token, TokenCache, cache_name, with_token
from psatriage.shared.tokens import tokens_for

KEY = SecretStr(Fernet.generate_key().decode())


class Login:
    """A PSA's login: counts its calls, remembers what it was asked to replace."""

    def __init__(self, lifetime: float = 600.0, delay: float = 0.0) -> None:
        self.issued: list[str] = []
        self.previous: list[Token | None] = []
        self.lifetime, self.delay = lifetime, delay

    def __call__(self, previous: Token | None) -> Token:
        time.sleep(self.delay)
        self.previous.append(previous)
        self.issued.append(f"token-{len(self.issued) + 1}")
        refresh = f"refresh-{len(self.issued)}"
        return Token(self.issued[-1], time.monotonic() + self.lifetime, refresh, None)


def test_one_fetch_for_many_threads_then_the_cached_token() -> None:
    login = Login(delay=0.1)
    cache = TokenCache("psa:app", login)
    got: list[str] = []
    threads = [threading.Thread(target=lambda: got.append(cache.current())) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert got == ["token-1"] * 8 and login.issued == ["token-1"]


def test_a_token_due_for_renewal_is_replaced_with_the_old_one_given_to_the_login() -> None:
    login = Login(lifetime=0.0)
    cache = TokenCache("psa:app", login)
    assert cache.current() == "token-1"
    assert cache.current() == "token-2"  # due at once
    assert login.previous[1] is not None and login.previous[1].refresh == "refresh-1"


def test_a_refused_token_is_replaced_once_for_every_thread() -> None:
    login = Login()
    cache = TokenCache("psa:app", login)
    first = cache.current()
    assert cache.replace(first) == ("token-2", True)  # issued for this call
    assert cache.replace(first) == ("token-2", False)  # another thread's: worth one more try
    assert login.issued == ["token-1", "token-2"]


def test_with_token_retries_once_then_once_more_for_a_token_not_issued_for_it() -> None:
    login = Login()
    cache = TokenCache("psa:app", login)
    refused = {"token-1"}
    sent: list[str] = []

    def attempt(token: str) -> httpx.Response:
        sent.append(token)
        if token == "token-2" and len(sent) == 1:
            cache.replace("token-2")  # meanwhile another thread had token-3 issued
        return httpx.Response(401 if token in refused else 200)

    assert with_token(cache, attempt).status_code == 200
    assert sent == ["token-1", "token-2"]
    refused.update({"token-2", "token-3"})  # the PSA refuses the other thread's token as well
    sent.clear()
    assert with_token(cache, attempt).status_code == 200
    assert sent == ["token-2", "token-3", "token-4"]  # one more replacement, issued for us
    assert login.issued == ["token-1", "token-2", "token-3", "token-4"]


def test_the_cache_never_shows_a_token() -> None:
    cache = TokenCache(cache_name("kaseya_bms", "https://api", "user"), Login())
    cache.current()
    assert "token-1" not in repr(cache) and "refresh-1" not in repr(Token("token-1", 0, "r"))
    assert cache_name("psa", "a", "b") != cache_name("psa", "a", "c")


def test_processes_share_the_token_and_its_refresh_token(shared_url: str) -> None:
    one_store, other_store = tokens_for(shared_url, KEY), tokens_for(shared_url, KEY)
    assert one_store is not None and other_store is not None
    try:
        login = Login()
        one = TokenCache("psa:app", login, shared=one_store)
        other = TokenCache("psa:app", login, shared=other_store)  # another process
        assert one.current() == other.current() == "token-1"
        assert login.issued == ["token-1"]
        assert other.replace("token-1") == ("token-2", True)  # refused: renewed and shared
        assert one.replace("token-1") == ("token-2", False)  # taken from the store
        assert other.replace("token-2") == ("token-3", True)
        assert login.previous[-1] is not None
        assert login.previous[-1].refresh == "refresh-2"  # the shared one's, to refresh with
    finally:
        one_store.close()
        other_store.close()
