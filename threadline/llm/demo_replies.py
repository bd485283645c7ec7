"""What the offline demo model says: deterministic, and good enough to show an app with.

In order of precedence, for the last message of the conversation:

1. After a tool result: it reports what the tool returned (or why the call failed).
2. Tools given: it calls the tool the user's words ask for (its name's words count twice, its
   description's once; generic verbs like "get" and words every tool shares count nothing),
   once per user message, and only when it can fill the tool's required arguments from the
   message: part codes (`TL-4471`) for code-like parameters (or the code of the part the
   message names in the reference passages, or one said earlier), places ("weather for
   London" -> `London`) for `city`/`location`-like ones, quantities ("two", "2", "x3", "a
   pair of", "a dozen") for `quantity`-like numbers, enum values, e-mail addresses and dates
   the message mentions, and the message itself for free text. A message that only gives a
   part code calls a read-only tool (`lookup_…`, `get_…`) that takes one, unless the
   reference passages already mention the code.
3. The system prompt describes an interview (it says "interview", or has "Ask" lines and
   questions): it thanks the user for their last answer, copies any list the prompt says to
   propose or read back ("Propose this outline:", "Read back:"), and asks the question of an
   `Ask next:` / `Then ask:` line, else the first question of the prompt not asked yet. With
   none left it sums up every answer once ("That was my last question"), and after that
   asks whether there is anything to add.
4. Reference passages (after a "Context:", "Sources:", "References:", "Documents:" or
   "Knowledge:" line, or markdown sections), in the system prompt or the last user message:
   numbered ones (`[1] label` then text, as `format_context` writes them) are ranked, and it
   answers from the first, with the sentences, list items or table rows that best match the
   question (those naming an identifier the question asks about, like `E7`, first), cited as
   `[1]`; unnumbered ones are searched for the best match. When the passage shares no word or
   identifier with the question, or the context block is empty, it says it could not find
   the answer and offers a human (`NOT_FOUND`).
5. Otherwise: a short summary of what the user said, and how to get a real model.

Every answer starts with `LABEL`, so nobody takes it for a real model. Each rule has its
module: `demo_tools` (1, 2), `demo_interview` (3), `demo_passages` (4); `demo_text` reads
the words they compare.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

from .demo_interview import interview, is_interview
from .demo_passages import NOT_FOUND, answer_from, find_passages, names_a_context
from .demo_text import content_words, identifiers, quote
from .demo_tools import after_tool, tool_call
from .messages import Message, ToolCall, ToolDef

__all__ = ["LABEL", "NOT_FOUND", "DemoReply", "compose_reply", "content_words", "identifiers"]

LABEL = "[demo model] "


@dataclass(frozen=True)
class DemoReply:
    text: str
    tool_call: ToolCall | None = None


def _echo(text: str) -> str:
    if not text.strip():
        return "Hello! I am the offline demo model. Ask me anything."
    keywords = [w for w, _ in Counter(content_words(text)).most_common(5)]
    about = f" Key words: {', '.join(keywords)}." if keywords else ""
    return (
        f"You said: “{quote(text, 25)}”.{about} I am an offline demo model, so I can "
        "only summarise; set a provider key such as ANTHROPIC_API_KEY for real answers."
    )


def compose_reply(messages: Sequence[Message], tools: Sequence[ToolDef] = ()) -> DemoReply:
    """The demo model's answer to a conversation (see the module docstring)."""
    if messages and messages[-1].role == "tool":
        return DemoReply(LABEL + after_tool(messages[-1], messages))
    system = "\n".join(m.content for m in messages if m.role == "system")
    user = next((m.content for m in reversed(messages) if m.role == "user"), "")
    passages, question = find_passages(user)
    if not passages:
        passages, _ = find_passages(system)
        question = user
    last_is_user = bool(messages) and messages[-1].role == "user"
    if tools and last_is_user and (call := tool_call(question or user, tools, messages, passages)):
        return DemoReply(f"{LABEL}Let me check that with the {call.name} tool.", call)
    if is_interview(system):
        return DemoReply(LABEL + interview(system, messages))
    if passages:
        return DemoReply(LABEL + answer_from(passages, question or user))
    if names_a_context(system):
        return DemoReply(LABEL + NOT_FOUND)  # retrieval found nothing at all
    return DemoReply(LABEL + _echo(user))
