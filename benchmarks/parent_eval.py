"""Parents' questions on the whole live path: does each get a parent's answer? (issue 13)

    .venv/bin/python benchmarks/parent_eval.py [file.tsv ...]     # default: every tests/parents/data/*.tsv

Each question goes in a web chat session of its own opened as a parent (from an address of its own),
through the real gateway, engine and action server. The file is tab-separated with a header:
`inside` (yes: one of the topics or referrals the line had when the batch was written), `topic` (the
guidance topic that answers it, data/guidance/<topic>.yml, or the referral that says who can,
data/guidance/referrals/<topic>.yml, or `referral_other` for a question outside the line's field, which
the out-of-scope reply fits; one the line does not have yet counts as missed), `risk`
(calm, follow_up: a sign a clinician would follow up, urgent: the child is in danger now), `text`.

What counts, per question:
- a fitting parent answer: a calm question gets the guidance of its topic (or its referral); a follow_up one is offered a
  counsellor (or a case opens); an urgent one opens an orange or red case and shows the numbers;
- or a good question back: the clarifying question whose buttons hold its topic;
- wrong-audience replies: every reply written for a student (tests/support.py, `written_for`);
- crisis texts on calm questions: a calm question the screen put below orange, answered with the crisis
  reply, the numbers or a case (a question its writer thought calm that the protocol puts at orange, such
  as a child extorted again and again, is counted apart: the protocol's crisis path is what it asks for).
Goals (issue 13, every fresh batch's first run): at least 90 % fitting or a good question back, 0 replies
for the wrong audience, 0 crisis texts on calm questions.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import uuid
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import select

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from actions.guidance import all_answers, all_guidance, all_referrals
from benchmarks.common import benchmark_stack, table
from benchmarks.live_path import shows_numbers, writer_address
from benchmarks.triage_eval import percent
from records.db import with_session
from records.models import Case, Message
from records.roster import put_on_call
from tests.support import variations, wrong_reader

ROOT = Path(__file__).resolve().parent.parent
# a question outside the line's field: the out-of-scope reply fits it
OUT_OF_FIELD = "referral_other"
BATCHES = sorted((ROOT / "tests" / "parents" / "data").glob("*.tsv"))
CRISIS_RESPONSES = (
    "utter_crisis_red",
    "utter_crisis_orange",
    "utter_crisis_suicidal_thoughts",
    "utter_crisis_self_harm",
    "utter_crisis_abuse",
    "utter_crisis_friend_at_risk",
    "utter_crisis_parent_child_self_harm",
    "utter_crisis_parent_child_death_talk",
)


@dataclass(frozen=True)
class Question:
    inside: bool
    topic: str
    risk: str  # calm | follow_up | urgent
    text: str


@dataclass(frozen=True)
class Answered:
    question: Question
    topics: tuple[str, ...]  # the guidance topics the answer gave, in order
    offered: tuple[str, ...]  # the topics a clarifying question offered as buttons
    counsellor: bool  # a counsellor was offered
    numbers: bool  # a number to call now was shown
    crisis: bool  # a crisis reply was given
    outside: bool  # the out-of-scope reply was given
    case: str | None  # the level of the conversation's case
    wrong_audience: int  # replies written for a student
    screened: str | None = None  # the level the gateway's screen gave the question
    first_reply: str = ""  # the beginning of the first reply (for --errors)


def read(path: Path) -> list[Question]:
    rows = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if number == 1 or not line.strip():
            continue
        inside, topic, risk, text = line.split("\t", 3)
        rows.append(Question(inside == "yes", topic, risk, text))
    return rows


def titles() -> dict[str, str]:
    """Each guidance topic's or referral's title line as a parent reads it (【title】) -> its id."""
    return {f"【{g.title}】": topic for topic, g in all_answers().items()}


def classify(
    question: Question, replies: list[dict[str, Any]], case: str | None, screened: str | None = None
) -> Answered:
    by_title = titles()
    by_button = {g.title: topic for topic, g in all_answers().items()}
    texts = [reply["text"] for reply in replies]
    topics = tuple(by_title[t.split("\n", 1)[0]] for t in texts if t.split("\n", 1)[0] in by_title)
    offered = tuple(
        by_button[b["title"]] for reply in replies for b in reply.get("buttons") or [] if b["title"] in by_button
    )
    offers = variations("utter_offer_counsellor", "parent")
    outside = variations("utter_out_of_scope", "parent")
    crisis_texts = set().union(*(variations(name, "parent") for name in CRISIS_RESPONSES))
    return Answered(
        question,
        topics,
        offered,
        counsellor=any(t in offers for t in texts),
        numbers=shows_numbers(texts),
        crisis=any(t in crisis_texts for t in texts),
        outside=any(t in outside for t in texts),
        case=case,
        wrong_audience=sum(wrong_reader(t, "parent") for t in texts),
        screened=screened,
        first_reply=(texts[0] or "")[:24] if texts else "",
    )


def fitting(answer: Answered) -> bool:
    """The answer a parent needs: the topic's guidance, the counsellor for a sign to follow up, the
    crisis path for a child in danger now."""
    question = answer.question
    if answer.wrong_audience:
        return False
    if question.risk == "urgent":
        return answer.case in ("orange", "red") and answer.numbers
    if question.risk == "follow_up":
        return answer.counsellor or answer.case is not None
    return first_answer(answer) == question.topic and not answer.crisis


def first_answer(answer: Answered) -> str | None:
    """What the question was answered with first: a topic, a referral, `OUT_OF_FIELD` (the out-of-scope
    reply), or None (a question back, not understood, the crisis path)."""
    if answer.topics:
        return answer.topics[0]
    return OUT_OF_FIELD if answer.outside else None


def asked_well(answer: Answered) -> bool:
    """A clarifying question whose buttons hold the question's topic."""
    return answer.question.risk == "calm" and answer.question.topic in answer.offered and not answer.wrong_audience


def stored(url: str, message_id: int) -> tuple[str | None, str | None]:
    """The level of the conversation's case, and the level the screen gave the message."""

    async def levels(session: Any) -> tuple[str | None, str | None]:
        message = await session.get(Message, message_id)
        case = await session.scalar(select(Case.level).where(Case.conversation_id == message.conversation_id))
        return case, message.risk_level

    return asyncio.run(with_session(url, levels))


def run(url: str, database_url: str, questions: list[Question]) -> list[Answered]:
    answers = []
    with httpx.Client(base_url=url, timeout=60) as http:
        for number, question in enumerate(questions, start=1):
            own = writer_address(number)
            session = http.post("/api/sessions", json={"audience": "parent"}, headers=own).json()["session"]
            answer = http.post(
                "/api/messages",
                json={"session": session, "message_id": uuid.uuid4().hex, "text": question.text},
                headers=own,
            ).json()
            replies = answer.get("replies", [])
            answers.append(classify(question, replies, *stored(database_url, answer["message_id"])))
    return answers


def report(name: str, answers: list[Answered]) -> str:
    escalating = ("orange", "red")

    def part(selected: list[Answered]) -> tuple[str, ...]:
        calm = [a for a in selected if a.question.risk == "calm"]
        below = [a for a in calm if a.screened not in escalating]
        return (
            percent(sum(1 for a in calm if first_answer(a) == a.question.topic), len(calm)),
            percent(sum(1 for a in selected if fitting(a) or asked_well(a)), len(selected)),
            str(sum(a.wrong_audience for a in selected)),
            str(sum(1 for a in below if a.crisis or a.numbers or a.case is not None)),
            str(len(calm) - len(below)),
        )

    inside = [a for a in answers if a.question.inside]
    outside = [a for a in answers if not a.question.inside]
    rows = [
        (f"all ({len(answers)})", *part(answers)),
        (f"inside the topics of the time ({len(inside)})", *part(inside)),
        (f"outside them ({len(outside)})", *part(outside)),
    ]
    headers = (
        "questions",
        "calm: top-1 topic",
        "fitting answer or right question back (goal >= 90 %)",
        "replies for a student (goal 0)",
        "calm, screened below orange: crisis text, numbers or a case (goal 0)",
        "calm by the writer, orange or red by the protocol",
    )
    missing = Counter(
        a.question.topic for a in answers if a.question.topic not in {*all_answers(), OUT_OF_FIELD}
    )
    lines = [
        f"Parents on the live path: {name} ({len(answers)} questions, {len(all_guidance())} topics, "
        f"{len(all_referrals())} referrals)"
    ]
    lines.append(table(headers, rows))
    if missing:
        lines.append("Topics the line does not have: " + ", ".join(f"{t} ({n})" for t, n in missing.most_common()))
    return "\n\n".join(lines)


def compare_searches(questions: list[Question]) -> str:
    """The shipped search against BM25 (rank-bm25) over jieba words and over character pairs, on the
    calm questions of a file whose topic the line has: how often each puts the right topic first, and
    among the nearest three. No stack needed."""
    import logging

    import jieba
    from rank_bm25 import BM25Okapi

    from actions.topic_finder import topic_finder

    jieba.setLogLevel(logging.WARNING)
    guidance = all_answers()
    topics = list(guidance)
    documents = [" ".join([g.title, *g.asked_as]) for g in guidance.values()]

    def bm25(tokens: Any) -> Any:
        index = BM25Okapi([tokens(d) for d in documents])
        return lambda text: [t for t, _ in sorted(zip(topics, index.get_scores(tokens(text))), key=lambda p: -p[1])]

    words = lambda text: [w for w in jieba.lcut(text) if w.strip()]  # noqa: E731
    pairs = lambda text: list(text) + [text[i : i + 2] for i in range(len(text) - 1)]  # noqa: E731
    searches = {
        "TF-IDF, character 1-3-grams (shipped)": lambda text: [t for t, _ in topic_finder().rank(text)],
        "BM25, jieba words": bm25(words),
        "BM25, characters and character pairs": bm25(pairs),
    }
    calm = [q for q in questions if q.risk == "calm" and q.topic in guidance]
    rows = []
    for name, search in searches.items():
        ranked = [search(q.text) for q in calm]
        first = sum(r[0] == q.topic for r, q in zip(ranked, calm, strict=True))
        near = sum(q.topic in r[:3] for r, q in zip(ranked, calm, strict=True))
        rows.append((name, percent(first, len(calm)), percent(near, len(calm))))
    return table(("search", "right topic first", "right topic among the nearest three"), rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("files", nargs="*", type=Path, help="parent question files (default: tests/parents/data)")
    parser.add_argument("--errors", action="store_true", help="print each question that was not answered well")
    parser.add_argument("--compare", action="store_true", help="compare the searches only (no stack)")
    args = parser.parse_args(argv)
    if args.compare:
        for path in args.files or BATCHES:
            print(f"Searches for a parent's topic on {path.name}\n\n{compare_searches(read(path))}\n")
        return 0
    # one trusted proxy in front, so that each writer's X-Forwarded-For is their address
    with benchmark_stack({"SANIC_PROXIES_COUNT": "1"}) as stack:
        asyncio.run(
            with_session(
                stack.config.database_url,
                lambda s: put_on_call(s, volunteers=["v1", "v2", "v3"], supervisors=["s1"]),
            )
        )
        for path in args.files or BATCHES:
            answers = run(stack.config.gateway_url, stack.config.database_url, read(path))
            print(report(path.name, answers), end="\n\n", flush=True)
            if args.errors:
                for a in answers:
                    if not fitting(a) and not asked_well(a):
                        got = first_answer(a) or ("offered " + ",".join(a.offered) if a.offered else "-")
                        print(f"  {a.question.risk:9} {a.question.topic:28} -> {got:28} case={a.case} "
                              f"screened={a.screened} crisis={a.crisis} wrong={a.wrong_audience}  "
                              f"{a.question.text[:50]}  [{a.first_reply}]")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
