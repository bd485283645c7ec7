"""One model interface over Anthropic, OpenAI, Google Gemini, Ollama and an offline demo model.

    model = get_model("anthropic:claude-sonnet-4-6")
    response = await model.request([Message.system("Be brief."), Message.user("Hi")])
    async for event in model.stream(messages): ...
    cost = price(response.provider, response.model, response.usage)

Provider adapters load their SDK on first use (`pip install 'threadline[anthropic]'`, ...);
this package itself never needs one. It knows nothing of PostgreSQL.
"""

from .demo import DemoFailure, DemoModel
from .errors import (
    AuthenticationFailed,
    ConnectionFailed,
    ContentFiltered,
    ContextWindowExceeded,
    InvalidRequest,
    InvalidToolSchema,
    LLMError,
    MissingProviderKey,
    Overloaded,
    ProviderNotInstalled,
    RateLimited,
    ServerError,
    StreamInterrupted,
    Timeout,
    UnknownModel,
    error_from_json,
)
from .events import (
    CallEvent,
    Notice,
    Response,
    ResponseBuilder,
    Restart,
    StreamEnd,
    StreamEvent,
    TextDelta,
    ToolCallDelta,
    Usage,
    UsageEvent,
)
from .messages import Message, ToolCall, ToolDef
from .model import PROVIDERS, Model, WrapperModel, check_installed, default_model_spec, get_model
from .options import CallOptions
from .pricing import ModelRates, Price, PriceOverrides, price, prices_per_token
from .tokens import estimate_messages, estimate_tokens, upper_bound_messages, upper_bound_tokens

__all__ = [
    "PROVIDERS",
    "AuthenticationFailed",
    "CallEvent",
    "CallOptions",
    "ConnectionFailed",
    "ContentFiltered",
    "ContextWindowExceeded",
    "DemoFailure",
    "DemoModel",
    "InvalidRequest",
    "InvalidToolSchema",
    "LLMError",
    "Message",
    "MissingProviderKey",
    "Model",
    "ModelRates",
    "Notice",
    "Overloaded",
    "Price",
    "PriceOverrides",
    "ProviderNotInstalled",
    "RateLimited",
    "Response",
    "ResponseBuilder",
    "Restart",
    "ServerError",
    "StreamEnd",
    "StreamEvent",
    "StreamInterrupted",
    "TextDelta",
    "Timeout",
    "ToolCall",
    "ToolCallDelta",
    "ToolDef",
    "UnknownModel",
    "Usage",
    "UsageEvent",
    "WrapperModel",
    "check_installed",
    "default_model_spec",
    "error_from_json",
    "estimate_messages",
    "estimate_tokens",
    "get_model",
    "price",
    "prices_per_token",
    "upper_bound_messages",
    "upper_bound_tokens",
]
