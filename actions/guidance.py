"""Parent guidance from data/guidance/: one YAML file per topic, validated once and kept in memory; and the
referrals of data/guidance/referrals/: questions the line cannot answer well itself (a child's eyesight, a
school's registration rules, custody), answered with who can."""

from __future__ import annotations

from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field

GUIDANCE_DIR = Path(__file__).resolve().parent.parent / "data" / "guidance"
REFERRALS_DIR = GUIDANCE_DIR / "referrals"
ROUTES_FILE = Path(__file__).with_name("topic_routes.yml")


class Sections(BaseModel):
    """The headings printed before each part, and the bullet for list items."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    what_is_happening: str
    this_week: str
    avoid: str
    get_help: str
    # an urgent topic's steps are for now, not for this week
    right_now: str
    # the last line of a referral: the line still listens
    referral_closing: str
    bullet: str = "· "


class Guidance(BaseModel):
    """One topic: the four parts a parent reads, how parents ask about it (`asked_as`, what finds the
    topic for a parent's own words: actions/topic_finder.py), and the sources of its facts. `intent` is
    the NLU's parent intent for the topic, when it has one (most topics are found by their phrasings)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    topic: str
    intent: str | None
    title: str
    what_is_happening: str
    this_week: list[str] = Field(min_length=1)
    avoid: list[str] = Field(min_length=1)
    get_help: str
    # questions about the topic may describe a child at risk (self-harm, abuse, voices): the learned
    # screen of the triage trains on the other topics' phrasings as calm parent questions, never on these
    may_describe_risk: bool = False
    # the steps are for now (a child missing): they come first, under their own heading
    urgent: bool = False
    asked_as: list[str] = Field(min_length=10)
    sources: list[str] = Field(min_length=1)
    reviewed_by: str | None = None

    def messages(self, sections: Sections) -> list[str]:
        """What a parent reads, in order: what is going on, this week, what to avoid, when to get help; for
        an urgent topic, what to do now first."""
        bullets = lambda items: "\n".join(f"{sections.bullet}{item}" for item in items)
        if self.urgent:
            return [
                f"【{self.title}】\n{sections.right_now}\n{bullets(self.this_week)}",
                f"{sections.what_is_happening}{self.what_is_happening}",
                f"{sections.avoid}\n{bullets(self.avoid)}",
                f"{sections.get_help}{self.get_help}",
            ]
        return [
            f"【{self.title}】\n{sections.what_is_happening}{self.what_is_happening}",
            f"{sections.this_week}\n{bullets(self.this_week)}",
            f"{sections.avoid}\n{bullets(self.avoid)}",
            f"{sections.get_help}{self.get_help}",
        ]


class Referral(BaseModel):
    """A kind of question the line cannot answer well itself (a child's body and medical care, a school's
    rules and paperwork, the law): a parent is told kindly who can answer it and where, rather than given
    the guidance of an unrelated topic or not understood. It states no facts of its own, only where to ask,
    so it needs no sources. Found like a topic, by its title and `asked_as` (actions/topic_finder.py)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    topic: str
    title: str
    # who answers such a question, and where (no phone number: numbers come from the directory)
    answer: str
    asked_as: list[str] = Field(min_length=10)
    reviewed_by: str | None = None
    # a referral is never for now: the urgent topics are guidance (missing_child)
    urgent: Literal[False] = False

    def messages(self, sections: Sections) -> list[str]:
        """What a parent reads: the title, who can answer, and that the line still listens."""
        return [f"【{self.title}】\n{self.answer}\n{sections.referral_closing}"]


Answer = Guidance | Referral


class TopicRoutes(BaseModel):
    """Which guidance topic answers a parent who uses a student's words (see topic_routes.yml)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    parent_topic_for_student_intent: dict[str, str]
    parent_topic_for_signal_group: dict[str, str] = {}


@cache
def sections() -> Sections:
    return Sections.model_validate(
        yaml.safe_load((GUIDANCE_DIR / "_sections.yml").read_text(encoding="utf-8"))
    )


@cache
def all_guidance() -> dict[str, Guidance]:
    """Every topic file, by topic. A file that does not validate stops the action server at start."""
    return {guidance.topic: guidance for guidance in _read(GUIDANCE_DIR, Guidance)}


@cache
def all_referrals() -> dict[str, Referral]:
    """Every referral file, by its id. A file that does not validate stops the action server at start."""
    return {referral.topic: referral for referral in _read(REFERRALS_DIR, Referral)}


@cache
def all_answers() -> dict[str, Answer]:
    """What a parent's question may be answered with: every guidance topic and every referral, by id. Two
    that share a title could not be told apart by a parent choosing a button, so they stop the start."""
    answers: dict[str, Answer] = {**all_guidance(), **all_referrals()}
    titles = [a.title for a in answers.values()]
    if len(answers) != len(all_guidance()) + len(all_referrals()) or len(set(titles)) != len(titles):
        raise ValueError("two guidance topics or referrals share an id or a title")
    return answers


def _read[T: (Guidance, Referral)](folder: Path, model: type[T]) -> Iterator[T]:
    """Each file of the folder (not the settings files, _*.yml), validated, its id its file name."""
    for path in sorted(folder.glob("*.yml")):
        if path.name.startswith("_"):
            continue
        item = model.model_validate(yaml.safe_load(path.read_text(encoding="utf-8")))
        if item.topic != path.stem:
            raise ValueError(f"{path.name}: topic {item.topic!r} does not match the file name")
        yield item


@cache
def routes() -> TopicRoutes:
    return TopicRoutes.model_validate(yaml.safe_load(ROUTES_FILE.read_text(encoding="utf-8")))


def guidance_for(intent: str, audience: str | None, signals: list[str] | None = None) -> Guidance | None:
    """The guidance that answers this intent for this audience, or None when a student reply fits.

    A turn the triage gate escalated has no topic intent; for a parent its signal ids (for example
    "suicide.ideation") choose the guidance instead, in the order topic_routes.yml lists the groups.
    """
    if audience == "parent" and intent.startswith("EXTERNAL_risk_"):
        groups = {signal.split(".", 1)[0] for signal in signals or []}
        for group, topic in routes().parent_topic_for_signal_group.items():
            if group in groups:
                return all_guidance().get(topic)
        return None
    topic = topic_of_intent(intent) if audience == "parent" else _topic_of_parent_intent(intent)
    return all_guidance().get(topic) if topic else None


def _topic_of_parent_intent(intent: str) -> str | None:
    """The topic whose own NLU intent this is (parent_exam_stress → exam_stress), or None."""
    return next((topic for topic, g in all_guidance().items() if g.intent and g.intent == intent), None)


def topic_of_intent(intent: str) -> str | None:
    """The guidance topic an NLU intent names for a parent: a parent intent's own topic, or the topic a
    student's intent stands for when a parent uses those words (topic_routes.yml); None otherwise."""
    return _topic_of_parent_intent(intent) or routes().parent_topic_for_student_intent.get(intent)
