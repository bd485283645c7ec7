"""The demo memoir bot, end to end over a WebSocket: intake -> outline -> chapters -> review,
one question at a time, every answer kept, and the memoir exported as Markdown chapters."""

from __future__ import annotations

from threadline.demo.memoir import CHAPTERS, INTAKE, OUTLINE_QUESTION, REVIEW_QUESTION

from ..chat_server import ChatServer
from .conftest import converse, session_info

INTAKE_ANSWERS = [
    "In Lyon, in the spring of 1950, in a flat above my parents' bakery.",
    "My grandmother Rose, who taught me to read, and my brother Paul.",
    "I drove trains for thirty years; I loved the night runs along the Rhône.",
]
OUTLINE_ANSWER = "It looks right. Let's begin."
CHAPTER_ANSWERS = [
    "The smell of bread at four in the morning, and flour on the stairs.",
    "My father humming while he shaped the loaves.",
    "It taught me that work starts before anyone is awake.",
    "Rose's kitchen, the radio on, a book open on the oilcloth.",
    "Paul, stealing the last biscuit and blaming the cat.",
    "They gave me patience, and a taste for stories.",
    "The cab of my first locomotive, the dials glowing green.",
    "My instructor Marcel, who said: never trust a quiet signal.",
    "Freedom, mostly. And the rhythm of the rails.",
]
REVIEW_NOTE = "Please add that Paul became a baker too."


async def test_the_memoir_walks_its_stages_and_exports_its_chapters(chat: ChatServer) -> None:
    session = await chat.new_session("memoir")
    messages = [*INTAKE_ANSWERS, OUTLINE_ANSWER, *CHAPTER_ANSWERS, REVIEW_NOTE]
    ends = await converse(chat, session, messages)
    replies, states = [end["text"] for end in ends], [end["state"] for end in ends]

    assert states == ["intake", "intake", "outline", *["chapters"] * 9, "review", "review"]
    # Each reply thanks the user for what they just said and asks the stage's next question.
    assert "In Lyon, in the spring of 1950" in replies[0] and replies[0].endswith(INTAKE[1])
    assert replies[1].endswith(INTAKE[2])
    outline = replies[2]
    assert all(f"{n}. {title}" in outline for n, title in enumerate(CHAPTERS, 1))
    assert outline.endswith(OUTLINE_QUESTION)
    for n, reply in ((1, replies[3]), (2, replies[6]), (3, replies[9])):
        assert f"chapter {n}, “{CHAPTERS[n - 1]}”" in reply
    assert REVIEW_QUESTION in replies[12] and "# My memoir" in replies[12]
    assert not any("last question" in reply for reply in replies)
    assert len(set(replies)) == len(replies)  # never the same reply twice

    info = await session_info(chat, session)
    document = info["data"]["memoir"]
    assert [a["answer"] for a in info["data"]["answers"]] == messages  # every answer kept
    for n, title in enumerate(CHAPTERS, 1):
        assert f"## Chapter {n}: {title}" in document
    for text in [*INTAKE_ANSWERS, *CHAPTER_ANSWERS]:
        assert text in document
    chapter_two = document.split("## Chapter 2")[1].split("## Chapter 3")[0]
    assert INTAKE_ANSWERS[1] in chapter_two and CHAPTER_ANSWERS[4] in chapter_two
    assert document.rstrip().endswith(f"- {REVIEW_NOTE}")

    markdown = await session_info(chat, session, "/export", format="md")
    assert "## Chapter 3: Work and what I loved" in markdown and CHAPTER_ANSWERS[-1] in markdown
