"""Session tokens for browsers (short-lived, signed, scoped to one session), the admin key
and the dashboard's cookie, and the allowed-origins check shared by CORS and the WebSocket
handshake."""

from __future__ import annotations

import hashlib
import hmac
import time
from dataclasses import dataclass
from urllib.parse import urlsplit

import jwt

from ..errors import ThreadlineError

ADMIN_COOKIE_TTL = 8 * 3600


class AuthError(ThreadlineError):
    """A missing, invalid, expired or wrongly scoped credential."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class Auth:
    """Session tokens: an hour of use each (`token_ttl`); a token expired for less than
    `refresh_window` can still be exchanged for a fresh one (`POST .../token`: a widget
    opened again after days keeps its conversation). Each names the session's token
    generation it was issued in: revoking a session's tokens moves the generation on."""

    secret: str
    admin_key: str | None = None
    allowed_origins: tuple[str, ...] = ()
    token_ttl: int = 3600
    refresh_window: int = 30 * 86400

    def issue(self, session_id: str, ttl: int | None = None, *, generation: int = 0) -> str:
        now = int(time.time())
        claims = {
            "sid": session_id,
            "gen": generation,
            "iat": now,
            "exp": now + (ttl or self.token_ttl),
        }
        return jwt.encode(claims, self.secret, algorithm="HS256")

    def verify(self, token: str | None, session_id: str, *, refreshing: bool = False) -> int:
        """The token's generation; AuthError unless `token` is a valid, unexpired token of
        `session_id` (`refreshing`: expired for less than `refresh_window` will do). Whether
        the generation is still the session's is the caller's to check (`check_generation`):
        it needs the database, and a forged or foreign token is refused before any query."""
        if not token:
            raise AuthError("unauthorized", "a session token is required")
        leeway = self.refresh_window if refreshing else 0
        try:
            claims = jwt.decode(token, self.secret, algorithms=["HS256"], leeway=leeway)
        except jwt.ExpiredSignatureError:
            raise AuthError("token_expired", "the session token has expired") from None
        except jwt.InvalidTokenError:
            raise AuthError("unauthorized", "the session token is not valid") from None
        if claims.get("sid") != session_id:
            raise AuthError("forbidden", "the token is for another session")
        generation = claims.get("gen", 0)
        return generation if isinstance(generation, int) else -1

    @staticmethod
    def check_generation(token_generation: int, session_generation: int) -> None:
        if token_generation != session_generation:
            raise AuthError("token_revoked", "the session's tokens were revoked")

    def is_admin(self, authorization: str | None) -> bool:
        if not authorization:
            return False
        scheme, _, key = authorization.partition(" ")
        return scheme.lower() == "bearer" and self.is_admin_key(key)

    def is_admin_key(self, key: str) -> bool:
        if not self.admin_key:
            return False
        # As bytes: compare_digest refuses str with characters beyond ASCII.
        return hmac.compare_digest(_bytes(key), _bytes(self.admin_key))

    def issue_admin_cookie(self) -> str:
        """The dashboard's cookie: signed, for 8 hours, and only while the admin key is the
        one it was issued under (a new key logs every browser out)."""
        now = int(time.time())
        claims = {"adm": 1, "kfp": self._key_fingerprint(), "exp": now + ADMIN_COOKIE_TTL}
        return jwt.encode(claims, self.secret, algorithm="HS256")

    def is_admin_cookie(self, token: str | None) -> bool:
        if not token or not self.admin_key:
            return False
        try:
            claims = jwt.decode(token, self.secret, algorithms=["HS256"])
        except jwt.InvalidTokenError:
            return False
        fingerprint = claims.get("kfp")
        return (
            claims.get("adm") == 1
            and isinstance(fingerprint, str)
            and hmac.compare_digest(_bytes(fingerprint), _bytes(self._key_fingerprint()))
        )

    def _key_fingerprint(self) -> str:
        assert self.admin_key is not None
        return hashlib.sha256(b"threadline-admin-key:" + _bytes(self.admin_key)).hexdigest()[:32]

    def origin_allowed(self, origin: str | None, host: str | None) -> bool:
        """No Origin (not a browser) or the server's own origin is always allowed; any other
        must be listed ('*' allows all)."""
        if origin is None:
            return True
        if "*" in self.allowed_origins or origin in self.allowed_origins:
            return True
        return host is not None and urlsplit(origin).netloc == host


def _bytes(text: str) -> bytes:
    return text.encode("utf-8", "surrogatepass")
