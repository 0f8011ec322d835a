"""Which guidance topic answers a parent's question, in their own words (issue 13).

Parents ask about far more than the NLU's twelve parent intents, and the NLU picks one of those twelve
even for a question about a bereavement or a stepfamily. So for a parent the topic is found by searching
the guidance itself: each topic is one document of its title and of the ways parents ask about it
(`asked_as` in data/guidance/<topic>.yml), and a question is compared with every topic by TF-IDF over
character 1-3-grams (scikit-learn), by cosine. On the same questions this ranked as well as BM25 over
jieba words or character pairs (rank-bm25) and needs no word segmenter; the figures are in the README,
Benchmarks → Parents (`benchmarks/parent_eval.py --compare`).

A referral (data/guidance/referrals/: a child's body and medical care, a school's rules and paperwork, the
law) is searched like a topic: a question about glasses or school registration is told who can answer it,
rather than given the nearest family-education topic.

The decision, with the settings of data/guidance/_finding.yml:
- a question about something outside the line's field (a pet to buy, the parent's own back pain) gets the
  out-of-scope reply: its nearest questions outside the field (data/guidance/_out_of_field.yml) are at
  least as near as its nearest phrasings of the guidance, except when an urgent topic is clearly nearest;
- answer the NLU's own topic when the NLU is sure of it and the search puts it among the nearest topics;
- else answer the nearest topic when it is clearly ahead of the next one;
- else ask one clarifying question: the nearest topics as buttons, and a person;
- a question that is near no topic at all (今天天气怎么样) gets the not-understood reply instead.
A topic the search does not rank near the question is never answered, whatever the NLU predicted.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from pydantic import BaseModel, ConfigDict, Field
from sklearn.feature_extraction.text import TfidfVectorizer

from actions.guidance import GUIDANCE_DIR, Answer, all_answers

SETTINGS_FILE = GUIDANCE_DIR / "_finding.yml"
OUT_OF_FIELD_FILE = GUIDANCE_DIR / "_out_of_field.yml"


class FindingSettings(BaseModel):
    """data/guidance/_finding.yml: when a parent's question is answered, and the clarifying question's
    buttons."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    # the nearest topic is answered when its score is at least this many times the second topic's
    answer_when_ahead_by: float = Field(gt=1.0)
    # the NLU's own topic is answered when the NLU is at least this sure and it is among `nearest`
    nlu_confidence: float = Field(gt=0.0, le=1.0)
    # a parent's message the NLU read as a service question or small talk less surely than this goes to
    # the search (actions/unsure.py)
    service_confidence: float = Field(gt=0.0, le=1.0)
    # a question whose nearest topic scores below this is about nothing the guidance covers
    min_score: float = Field(ge=0.0, lt=1.0)
    # a question whose this many nearest questions outside the line's field are on average at least as
    # near as its this many nearest phrasings of the guidance gets the out-of-scope reply (a pet, a phone
    # to buy, the parent's own marriage), not the nearest topic
    out_of_field_neighbours: int = Field(ge=1, le=20)
    # how many topics the clarifying question offers
    nearest: int = Field(ge=1, le=5)
    # a topic button's payload: this prefix and the topic's title (the NLU's choose_topic intent)
    choice_prefix: str = Field(min_length=1)
    # the last button of the clarifying question: a person
    person_button: str = Field(min_length=1)
    # how a writer names their own child: a message of unknown audience that does is a parent's
    own_child: re.Pattern[str]
    # a message saying who writes is an introduction up to this length; a longer one may be a question
    introduction_max_chars: int = Field(ge=4)


@dataclass(frozen=True, slots=True)
class Found:
    """The topic to answer with (None: ask), and the nearest topics with their scores, best first (none
    when the question is about nothing the guidance covers); `outside`: the question is about something
    outside the line's field (the out-of-scope reply)."""

    answer: str | None
    nearest: tuple[tuple[str, float], ...]
    outside: bool = False


class TopicFinder:
    """The search over the guidance topics, built once from the files."""

    def __init__(
        self, guidance: Mapping[str, Answer], settings: FindingSettings, outside_questions: Sequence[str]
    ) -> None:
        self.settings = settings
        self._topics = list(guidance)
        self._urgent = {topic for topic, g in guidance.items() if g.urgent}
        self._titles = {g.title: topic for topic, g in guidance.items()}  # button payloads: chosen_topic
        documents = [" ".join([g.title, *g.asked_as]) for g in guidance.values()]
        self._vectorizer = TfidfVectorizer(analyzer="char", ngram_range=(1, 3), sublinear_tf=True)
        self._matrix = self._vectorizer.fit_transform(documents)
        # the field check: each phrasing on its own, in the same character n-grams
        inside = [q for g in guidance.values() for q in (g.title, *g.asked_as)]
        self._inside_questions = self._vectorizer.transform(inside)
        self._outside_questions = self._vectorizer.transform(list(outside_questions))

    def outside_field(self, text: str) -> bool:
        """The question is about something outside the line's field: its nearest questions outside the
        field (data/guidance/_out_of_field.yml) are on average at least as near as its nearest phrasings
        of the guidance and referrals (cosine, `out_of_field_neighbours` of each). Nearest neighbours
        rather than a classifier: on the development batches a logistic regression over the same n-grams
        took twice as many questions about school places or short sight for outside the field."""
        return self._outside(self._column(text))

    def rank(self, text: str) -> list[tuple[str, float]]:
        """Every topic with its cosine score for the text, best first."""
        return self._ranked(self._column(text))

    def _column(self, text: str) -> Any:
        """The text in the search's character n-grams, as a column: transformed once per question."""
        return self._vectorizer.transform([text]).T

    def _ranked(self, question: Any) -> list[tuple[str, float]]:
        scores = (self._matrix @ question).toarray().ravel()
        return sorted(zip(self._topics, (float(s) for s in scores), strict=True), key=lambda pair: -pair[1])

    def _outside(self, question: Any) -> bool:
        if self._outside_questions.shape[0] == 0:
            return False
        k = self.settings.out_of_field_neighbours

        def nearness(matrix: Any) -> float:
            scores = (matrix @ question).toarray().ravel()
            return float(np.sort(scores)[::-1][:k].mean())

        outside = nearness(self._outside_questions)
        return outside > 0 and outside >= nearness(self._inside_questions)

    def find(self, text: str, nlu_topic: str | None = None, nlu_confidence: float = 0.0) -> Found:
        """The topic that answers the text, or None when a clarifying question is due (see the module)."""
        question = self._column(text)
        ranked = self._ranked(question)
        nearest = tuple(ranked[: self.settings.nearest])
        near_topics = [topic for topic, _ in nearest]
        (best, first), (_, second) = ranked[0], ranked[1]
        ahead = first > 0 and first >= self.settings.answer_when_ahead_by * second
        if ahead and best in self._urgent and first >= self.settings.min_score:  # never "not ours"
            return Found(best, nearest)
        if self._outside(question):  # a recipe, a fund, a phone to buy: near no topic, or wrongly near one
            return Found(None, nearest, outside=True)
        if first < self.settings.min_score:
            return Found(None, ())
        if nlu_topic in near_topics and nlu_confidence >= self.settings.nlu_confidence:
            return Found(nlu_topic, nearest)
        if ahead:
            return Found(best, nearest)
        return Found(None, nearest)

    def about_own_child(self, text: str) -> bool:
        """The writer names their own child (孩子天天…, 我儿子…): a parent, when nobody has said."""
        return self.settings.own_child.search(text) is not None

    def chosen(self, text: str) -> str | None:
        """The topic a clarifying question's button names ("我想了解：<title>"), or None."""
        return chosen_topic(text, self.settings, self._titles)

    def buttons(self, topics: Sequence[str], guidance: Mapping[str, Answer]) -> list[dict[str, str]]:
        """The clarifying question's buttons: each topic by its title, then a person."""
        choice = [
            {"title": guidance[t].title, "payload": f"{self.settings.choice_prefix}{guidance[t].title}"}
            for t in topics
        ]
        person = self.settings.person_button
        return [*choice, {"title": person, "payload": person}]


def load_settings(path: Path = SETTINGS_FILE) -> FindingSettings:
    return FindingSettings.model_validate(yaml.safe_load(path.read_text(encoding="utf-8")))


def load_outside_questions(path: Path = OUT_OF_FIELD_FILE) -> list[str]:
    """Questions parents ask that are outside the line's field (data/guidance/_out_of_field.yml)."""
    questions = yaml.safe_load(path.read_text(encoding="utf-8"))["questions"]
    return [str(question) for question in questions]


def chosen_topic(
    text: str, settings: FindingSettings | None = None, titles: Mapping[str, str] | None = None
) -> str | None:
    """The topic a clarifying question's button names ("我想了解：<title>"), or None. Needs only the titles,
    not the search: the gateway asks it of every message (integrations/switchboard.py, screen_message)."""
    settings = settings or _shipped_settings()
    titles = titles if titles is not None else _shipped_titles()
    prefix = settings.choice_prefix
    title = text.strip().removeprefix(prefix).strip() if text.strip().startswith(prefix) else ""
    return titles.get(title)


@cache
def _shipped_settings() -> FindingSettings:
    return load_settings()


@cache
def _shipped_titles() -> dict[str, str]:
    return {g.title: topic for topic, g in all_answers().items()}


@cache
def topic_finder() -> TopicFinder:
    """The finder over the shipped guidance and referrals, built once per process."""
    return TopicFinder(all_answers(), _shipped_settings(), load_outside_questions())
