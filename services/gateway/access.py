"""Who may talk to the gateway: a pure policy over request headers, with no
socket of its own (the connection and the app do the IO).

The conventions are those clients already know:
- Bound to loopback with no keys (``make run``): non-browser local clients
  (no ``Origin`` header: the ``openai`` package, curl, our tools) need no
  setup; a browser must come from an allowed origin (default: the gateway's
  own page, and only under a loopback host name, so a DNS-rebinding page at
  ``evil.example`` resolving to 127.0.0.1 is refused too). This is Ollama's
  ``OLLAMA_ORIGINS`` rule.
- With API keys (required on any other bind unless ``allow_insecure``): a
  key as ``Authorization: Bearer <key>`` or, from a browser, the
  ``openai-insecure-api-key.<key>`` WebSocket subprotocol, as the Realtime API
  takes them; or a short-lived client secret (``ek_…``) minted by ``POST
  /v1/realtime/client_secrets`` so a browser never holds the key.

Client secrets are stateless (an HMAC of their expiry under the key that
minted them), so any replica that has the keys accepts them. A secret acts
for the key that minted it: sessions belong to that key (``Principal.id``)."""
from __future__ import annotations

import dataclasses
import hashlib
import hmac
import ipaddress
import secrets
import time
from typing import Callable, Mapping, Sequence
from urllib.parse import urlsplit

KEY_SUBPROTOCOL = "openai-insecure-api-key."
SECRET_PREFIX = "ek_"
LOCAL = "local"   # the principal of a keyless loopback gateway
LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")


class Denied(Exception):
    """Refused before any session exists: an HTTP status and a clear reason."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message

    def body(self) -> dict:
        return {"error": {"type": "invalid_request_error", "code": self.code, "message": self.message}}


@dataclasses.dataclass(frozen=True)
class Principal:
    """Who is connected: ``LOCAL`` or ``key:<fingerprint>`` (never the key itself)."""

    id: str
    key: str | None = None          # the API key (None for LOCAL and for client secrets)


def is_loopback(host: str) -> bool:
    """Whether a bind address or host name only reaches this machine."""
    name = host.strip().strip("[]").lower()
    if name == "localhost" or name.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def fingerprint(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()[:16]


def split_list(raw: str) -> list[str]:
    return [p.strip() for p in raw.replace("\n", ",").split(",") if p.strip()]


class AccessPolicy:
    def __init__(self, *, bind_host: str, api_keys: Sequence[str] = (), allowed_origins: Sequence[str] = (),
                 allow_insecure: bool = False, secret_ttl_s: int = 600,
                 wall: Callable[[], float] = time.time) -> None:
        self.loopback = is_loopback(bind_host)
        if not self.loopback and not api_keys and not allow_insecure:
            raise ValueError(
                f"the gateway listens on {bind_host}, beyond this machine, and has no API keys: set "
                "GATEWAY_API_KEYS (or GATEWAY_API_KEYS_FILE), or GATEWAY_ALLOW_INSECURE=true to let anyone "
                "who reaches the port use the assistant")
        if any(len(k) < 16 for k in api_keys):
            raise ValueError("every API key must have at least 16 characters")
        self.keys = {fingerprint(k): k for k in api_keys}
        self.origins = {o.rstrip("/").lower() for o in allowed_origins}
        self.secret_ttl_s = secret_ttl_s
        self.wall = wall

    @property
    def keys_required(self) -> bool:
        return bool(self.keys)

    # -- the check -------------------------------------------------------------------
    def check(self, headers: Mapping[str, str], subprotocols: Sequence[str] = ()) -> Principal:
        """The principal of a request (WebSocket upgrade or HTTP), or Denied."""
        self._check_origin(headers.get("origin"), headers.get("host", ""))
        offered = _bearer(headers.get("authorization")) or next(
            (p[len(KEY_SUBPROTOCOL):] for p in subprotocols if p.startswith(KEY_SUBPROTOCOL)), None)
        if not self.keys:
            return Principal(LOCAL)
        if not offered:
            raise Denied(401, "missing_api_key", "this gateway needs an API key: send 'Authorization: Bearer "
                         f"<key>' or the WebSocket subprotocol '{KEY_SUBPROTOCOL}<key>'")
        if offered.startswith(SECRET_PREFIX):
            return self._secret(offered)
        for fp, key in self.keys.items():
            if hmac.compare_digest(key.encode(), offered.encode()):
                return Principal(f"key:{fp}", key)
        raise Denied(401, "invalid_api_key", "the API key is not valid for this gateway")

    def _check_origin(self, origin: str | None, host: str) -> None:
        if origin is None:
            return    # not a browser: browsers always send Origin on WebSocket and POST
        o = origin.rstrip("/").lower()
        if "*" in self.origins or o in self.origins:
            return
        if self.origins:
            raise Denied(403, "origin_not_allowed", f"origin {origin!r} may not use this gateway "
                         "(it is not in GATEWAY_ALLOWED_ORIGINS)")
        if self.keys:
            return    # the credential admits a page of any origin (client secrets exist for that)
        parts = urlsplit(o)
        own = parts.scheme in ("http", "https") and parts.netloc == host.lower()
        # On loopback the page's host must be a loopback name too: a DNS-rebinding
        # page (evil.example resolving to 127.0.0.1) is "its own origin" otherwise.
        if not own or (self.loopback and not is_loopback(parts.hostname or "")):
            raise Denied(403, "origin_not_allowed", f"origin {origin!r} may not use this gateway: only its "
                         "own page may (set GATEWAY_ALLOWED_ORIGINS to allow others)")

    # -- client secrets ----------------------------------------------------------------
    def mint(self, principal: Principal, ttl_s: int | None = None) -> dict:
        """A client secret for ``principal`` (which must hold a key), as the
        Realtime API returns it: ``{"value": "ek_…", "expires_at": <unix s>}``."""
        if principal.key is None:
            raise Denied(403, "api_key_required", "only an API key can mint client secrets (not a client "
                         "secret, and not a gateway without keys)")
        expires = int(self.wall()) + (ttl_s or self.secret_ttl_s)
        body = f"{expires}.{principal.id.removeprefix('key:')}.{secrets.token_hex(8)}"
        return {"value": f"{SECRET_PREFIX}{body}.{_sign(principal.key, body)}", "expires_at": expires}

    def _secret(self, value: str) -> Principal:
        try:
            expires_s, fp, nonce, sig = value[len(SECRET_PREFIX):].split(".")
            expires = int(expires_s)
        except ValueError:
            raise Denied(401, "invalid_client_secret", "the client secret is malformed") from None
        key = self.keys.get(fp)
        if key is None or not hmac.compare_digest(sig, _sign(key, f"{expires_s}.{fp}.{nonce}")):
            raise Denied(401, "invalid_client_secret", "the client secret is not valid for this gateway")
        if self.wall() >= expires:
            raise Denied(401, "client_secret_expired", "the client secret has expired: mint a new one")
        return Principal(f"key:{fp}")


def check_admin(headers: Mapping[str, str], admin_keys: Sequence[str]) -> str:
    """The fingerprint of the admin key a request to /admin/* presents, or
    Denied. Admin keys are separate from client keys (a client that may talk
    to the assistant may not break it), and without any the admin endpoints
    are refused outright, also on loopback."""
    if not admin_keys:
        raise Denied(403, "admin_disabled", "the admin endpoints are off: set GATEWAY_ADMIN_API_KEYS "
                     "to use them")
    offered = _bearer(headers.get("authorization"))
    if not offered:
        raise Denied(401, "missing_api_key", "an admin endpoint needs 'Authorization: Bearer <admin key>'")
    for key in admin_keys:
        if hmac.compare_digest(key.encode(), offered.encode()):
            return fingerprint(key)
    raise Denied(401, "invalid_api_key", "the key is not an admin key of this gateway")


def _bearer(value: str | None) -> str | None:
    if not value:
        return None
    scheme, _, token = value.partition(" ")
    return (token.strip() or None) if scheme.lower() == "bearer" else None


def _sign(key: str, body: str) -> str:
    return hmac.new(key.encode(), body.encode(), hashlib.sha256).hexdigest()
