"""The errors every model adapter raises, whatever its provider.

Each adapter maps its SDK's exceptions to this one hierarchy in a single function, so the
router above can decide on retries and fallback from `retryable` and `code` alone.
`partial_text` carries what a failed stream had already produced, so a caller can show it
or restart cleanly.
"""

from __future__ import annotations

import email.utils
import re
import time
from collections.abc import Mapping
from typing import Any, ClassVar

from threadline.errors import ConfigurationError, ThreadlineError

__all__ = [
    "AuthenticationFailed",
    "ConnectionFailed",
    "ContentFiltered",
    "ContextWindowExceeded",
    "InvalidRequest",
    "InvalidToolSchema",
    "LLMError",
    "MissingProviderKey",
    "Overloaded",
    "ProviderNotInstalled",
    "RateLimited",
    "ServerError",
    "StreamInterrupted",
    "Timeout",
    "UnknownModel",
    "error_for_status",
    "error_from_json",
    "mentions_context_limit",
    "parse_retry_after",
    "transport_error",
]


class LLMError(ThreadlineError):
    """A model call failed. `retryable` says whether trying again (or elsewhere) may help."""

    retryable: ClassVar[bool] = False
    code: ClassVar[str] = "llm_error"

    def __init__(
        self,
        message: str,
        *,
        provider: str = "",
        status: int | None = None,
        partial_text: str = "",
    ) -> None:
        super().__init__(message)
        self.message = message
        self.provider = provider
        self.status = status
        self.partial_text = partial_text

    def to_json(self) -> dict[str, Any]:
        return {
            "code": self.code,
            "message": self.message,
            "provider": self.provider,
            "status": self.status,
            "partial_text": self.partial_text,
        }


class RateLimited(LLMError):
    """HTTP 429: too many requests or tokens; `retry_after` is the provider's hint in seconds."""

    retryable = True
    code = "rate_limited"

    def __init__(self, message: str, *, retry_after: float | None = None, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.retry_after = retry_after

    def to_json(self) -> dict[str, Any]:
        return {**super().to_json(), "retry_after": self.retry_after}


class Overloaded(LLMError):
    """The provider is overloaded (Anthropic 529, HTTP 503)."""

    retryable = True
    code = "overloaded"


class ServerError(LLMError):
    """The provider failed with a 5xx status."""

    retryable = True
    code = "server_error"


class Timeout(LLMError):
    """No answer within the client's timeout."""

    retryable = True
    code = "timeout"


class ConnectionFailed(LLMError):
    """The provider could not be reached."""

    retryable = True
    code = "connection_failed"


class StreamInterrupted(LLMError):
    """A stream stopped before its end, or sent a chunk that could not be read."""

    retryable = True
    code = "stream_interrupted"


class ContextWindowExceeded(LLMError):
    """The prompt is longer than the model's context window."""

    code = "context_window_exceeded"


class InvalidRequest(LLMError):
    """The provider rejected the request as malformed (HTTP 400/422)."""

    code = "invalid_request"


class AuthenticationFailed(LLMError):
    """The API key was missing, wrong or lacks permission (HTTP 401/403)."""

    code = "authentication_failed"


class ContentFiltered(LLMError):
    """The provider refused or blocked the answer for safety reasons."""

    code = "content_filtered"


class UnknownModel(LLMError, ConfigurationError):
    """The `provider:model` string names no known provider, or the provider has no such model."""

    code = "unknown_model"


class MissingProviderKey(LLMError, ConfigurationError):
    """No API key was given and none is in the provider's environment variable."""

    code = "missing_provider_key"


class ProviderNotInstalled(LLMError, ConfigurationError):
    """The provider's SDK is not installed; the message names the pip extra that brings it."""

    code = "provider_not_installed"

    def __init__(self, provider: str, package: str) -> None:
        super().__init__(
            f"the {provider!r} provider needs the {package!r} package: "
            f"pip install 'threadline[{provider}]'",
            provider=provider,
        )


class InvalidToolSchema(ConfigurationError):
    """A tool's `parameters` is not a valid JSON Schema object schema."""


_BY_CODE: dict[str, type[LLMError]] = {
    cls.code: cls
    for cls in (
        LLMError,
        RateLimited,
        Overloaded,
        ServerError,
        Timeout,
        ConnectionFailed,
        StreamInterrupted,
        ContextWindowExceeded,
        InvalidRequest,
        AuthenticationFailed,
        ContentFiltered,
        UnknownModel,
        MissingProviderKey,
    )
}


def error_from_json(data: Mapping[str, Any]) -> LLMError:
    """Rebuild an error written by `LLMError.to_json` (e.g. from a journal)."""
    cls = _BY_CODE.get(str(data.get("code")), LLMError)
    common: dict[str, Any] = {
        "provider": data.get("provider", ""),
        "status": data.get("status"),
        "partial_text": data.get("partial_text", ""),
    }
    message = str(data.get("message", ""))
    if cls is RateLimited:
        return RateLimited(message, retry_after=data.get("retry_after"), **common)
    return cls(message, **common)


_CONTEXT_PHRASES = re.compile(
    r"context.length|context.window|prompt is too long|too many tokens|maximum context"
    r"|input token count .* exceeds|exceeds the maximum number of tokens|input length",
    re.IGNORECASE,
)


def mentions_context_limit(message: str) -> bool:
    """Whether a provider's error text says the prompt does not fit the context window."""
    return bool(_CONTEXT_PHRASES.search(message))


def error_for_status(
    status: int,
    message: str,
    *,
    provider: str,
    retry_after: float | None = None,
    partial_text: str = "",
) -> LLMError:
    """The error for an HTTP status when the body has nothing more specific to say."""
    common: dict[str, Any] = {"provider": provider, "status": status, "partial_text": partial_text}
    if status == 429:
        return RateLimited(message, retry_after=retry_after, **common)
    if status in (503, 529):
        return Overloaded(message, **common)
    if status in (408, 504):
        return Timeout(message, **common)
    if status >= 500:
        return ServerError(message, **common)
    if status in (401, 403):
        return AuthenticationFailed(message, **common)
    if status == 404:
        return UnknownModel(message, **common)
    if mentions_context_limit(message):
        return ContextWindowExceeded(message, **common)
    return InvalidRequest(message, **common)


_NETWORK_ERROR_NAMES = frozenset(
    {"TransportError", "NetworkError", "ProtocolError", "ConnectionError", "OSError"}
    | {"APIConnectionError"}
)


def transport_error(
    exc: BaseException, *, provider: str, partial_text: str = "", in_stream: bool = False
) -> LLMError | None:
    """Map a network-level exception from any HTTP client (httpx, httpx2, the standard library)
    by its class names, so adapters need not import each SDK's transport. None if it is not one.
    A failure once a stream has started is always a `StreamInterrupted`."""
    names = {cls.__name__ for cls in type(exc).__mro__}
    is_timeout = bool(names & {"TimeoutException", "TimeoutError", "APITimeoutError"})
    is_network = bool(names & _NETWORK_ERROR_NAMES)
    if not (is_timeout or is_network):
        return None
    message = str(exc) or type(exc).__name__
    if in_stream:
        return StreamInterrupted(
            f"stream broken: {message}", provider=provider, partial_text=partial_text
        )
    if is_timeout:
        return Timeout(message, provider=provider)
    return ConnectionFailed(message, provider=provider)


def parse_retry_after(headers: Mapping[str, str] | None) -> float | None:
    """Seconds to wait from `retry-after-ms` or `retry-after` (seconds or an HTTP date)."""
    if not headers:
        return None
    lowered = {k.lower(): v for k, v in headers.items()}
    if (ms := lowered.get("retry-after-ms")) is not None:
        try:
            return max(float(ms) / 1000.0, 0.0)
        except ValueError:
            pass
    value = lowered.get("retry-after")
    if value is None:
        return None
    try:
        return max(float(value), 0.0)
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(when.timestamp() - time.time(), 0.0)
