"""Parent guidance from data/guidance/: one YAML file per topic, validated once and kept in memory."""

from __future__ import annotations

from functools import cache
from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field

GUIDANCE_DIR = Path(__file__).resolve().parent.parent / "data" / "guidance"
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
    topics = {}
    for path in sorted(GUIDANCE_DIR.glob("*.yml")):
        if path.name.startswith("_"):
            continue
        guidance = Guidance.model_validate(yaml.safe_load(path.read_text(encoding="utf-8")))
        if guidance.topic != path.stem:
            raise ValueError(f"{path.name}: topic {guidance.topic!r} does not match the file name")
        topics[guidance.topic] = guidance
    titles = [g.title for g in topics.values()]
    if len(set(titles)) != len(titles):
        raise ValueError("two guidance topics share a title: a parent choosing by title could not tell them apart")
    return topics


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
