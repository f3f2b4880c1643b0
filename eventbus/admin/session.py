"""Dashboard sign-in: a session cookie signed with the admin token, and a CSRF token bound to it.

The cookie is ``<issued unix s>.<nonce>.<hmac>`` (HttpOnly, SameSite=Strict), keyed by
EVENTBUS_ADMIN_TOKEN, so changing the token signs everybody out. Every state-changing form carries
``csrf`` = HMAC(token, "csrf:" + cookie), checked in constant time.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time

from fastapi import Request

COOKIE = "eventbus_session"
SESSION_TTL_S = 12 * 3600


def _key(request: Request) -> bytes:
    token: str = request.app.state.settings.admin_token
    if not token:  # --insecure-dev without a token: a key of this process (sessions end with it)
        key: bytes | None = getattr(request.app.state, "dev_session_key", None)
        if key is None:
            key = request.app.state.dev_session_key = secrets.token_bytes(32)
        return key
    return token.encode()


def _sign(request: Request, purpose: str, value: str) -> str:
    return hmac.new(_key(request), f"{purpose}:{value}".encode(), hashlib.sha256).hexdigest()


def token_matches(request: Request, given: str) -> bool:
    """Whether ``given`` is the admin token (constant time); with --insecure-dev and no token, anything is."""
    expected: str = request.app.state.settings.admin_token
    if not expected:
        return bool(request.app.state.insecure_dev)
    return hmac.compare_digest(given.encode(), expected.encode())


def new_session(request: Request) -> str:
    """A fresh signed session value for the cookie."""
    body = f"{int(time.time())}.{secrets.token_urlsafe(16)}"
    return f"{body}.{_sign(request, 'session', body)}"


def session_of(request: Request) -> str | None:
    """The request's session cookie if it is signed by this token and not expired, else None."""
    value = request.cookies.get(COOKIE, "")
    body, _, signature = value.rpartition(".")
    issued, _, _ = body.partition(".")
    if not signature or not issued.isdigit():
        return None
    if not hmac.compare_digest(signature, _sign(request, "session", body)):
        return None
    if time.time() - int(issued) > SESSION_TTL_S:
        return None
    return value


def csrf_token(session: str, request: Request) -> str:
    """The CSRF token every form of this session carries."""
    return _sign(request, "csrf", session)


def csrf_ok(request: Request, session: str, given: str) -> bool:
    """Whether a form's ``csrf`` field belongs to this session."""
    return hmac.compare_digest(given.encode(), csrf_token(session, request).encode())
