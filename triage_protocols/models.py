"""The schema of every protocol file, so a typo in a reviewed YAML file fails loudly instead of silently.

Every model forbids unknown keys: a misspelt `negatable:` or `respond_within_minute:` would otherwise be
ignored and change what the engine does without anyone noticing. Cross-file checks (a rule naming a
category that exists, instrument items being unique) live in `loader.py`, which sees all files at once.
"""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from triage_protocols.results import Audience, Level

Name = Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]*$")]
SignalId = Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]*\.[a-z0-9_]+$")]
Text = Annotated[str, Field(min_length=1)]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# ---------------------------------------------------------------- examples (every file carries some)


class Example(Strict):
    """A message and the level the protocol must give it; `check` and the tests run every one."""

    text: str
    level: Level
    audience: Audience = "student"
    # categories that must be among the signals that count, when the example is about one of them
    signals: tuple[Name, ...] = ()
    # recent messages of the same conversation, oldest first, passed to screen() as context
    context: tuple[str, ...] = ()
    # why the screens are unsure (learned.yml, `unsure`): "grey_band", "idiom_in_low_mood", or "none"
    # when the example must not be unsure; unset: not checked
    unsure: Literal["grey_band", "idiom_in_low_mood", "none"] | None = None
    note: str | None = None


class HasExamples(Strict):
    examples: tuple[Example, ...] = Field(min_length=1)


# ---------------------------------------------------------------- version.yml


class VersionFile(Strict):
    version: Annotated[str, Field(pattern=r"^\S+$")]
    status: Text
    notes: str = ""


# ---------------------------------------------------------------- levels.yml


class Staffing(Strict):
    staff: Annotated[int, Field(ge=0)]
    family: bool = False
    label: str | None = None


class EscalationStep(Strict):
    id: Name
    action: Text
    who: Text
    within_minutes: Annotated[int, Field(ge=0)] | None = None


Paged = Literal["lead", "supervisor"]
LadderStep = Literal["next_on_call", "supervisor"]


class CasePolicy(Strict):
    """When a level opens a case and who is paged; the case store (records/) acts on it.

    `opens`: `always` (every message at this level), `on_request` (when the person accepts a check-in,
    asks for a person, or a screening instrument lands here), `never`. `claim_within_minutes` is how long
    the paged counsellor has to claim the case before the SLA watchdog takes the next step of
    `if_unclaimed`, one step per deadline; the last step repeats until someone claims.
    """

    opens: Literal["always", "on_request", "never"]
    claim_within_minutes: Annotated[int, Field(ge=1)] | None = None
    page_at_once: tuple[Paged, ...] = ()
    if_unclaimed: tuple[LadderStep, ...] = ()
    # signal categories after which staff must judge whether contacting the family is safe before they
    # do it (abuse at home): the family-contact task is marked so
    family_safety_first_for: tuple[Name, ...] = ()

    @model_validator(mode="after")
    def _a_case_has_a_deadline(self) -> CasePolicy:
        if self.opens != "never" and (self.claim_within_minutes is None or not self.page_at_once):
            raise ValueError("a level that opens cases needs claim_within_minutes and page_at_once")
        return self


class LevelSpec(Strict):
    id: Level
    name: Text
    meaning: Text
    respond_within_minutes: Annotated[int, Field(ge=0)] | None
    follow_up_days: Annotated[int, Field(ge=0)] | None = None
    staffing: Staffing
    case: CasePolicy
    steps: tuple[EscalationStep, ...]


class FollowUpStep(Strict):
    after_days: Annotated[int, Field(ge=0)]
    what: Text


class LevelsFile(HasExamples):
    levels: tuple[LevelSpec, ...]
    # named follow-up plans, e.g. `return_to_school`: what staff do, and how many days after the start
    follow_up_plans: dict[Name, tuple[FollowUpStep, ...]]

    @model_validator(mode="after")
    def _all_four_in_order(self) -> LevelsFile:
        if tuple(spec.id for spec in self.levels) != tuple(Level):
            raise ValueError(f"levels must be exactly {[level.value for level in Level]}, in that order")
        return self


# ---------------------------------------------------------------- terms.yml


class TermsFile(HasExamples):
    """Named regular-expression fragments, written `{name}` inside a pattern (e.g. `{pills}`)."""

    terms: dict[Name, Text]


# ---------------------------------------------------------------- normalise.yml


class NormaliseExample(Strict):
    text: str
    normalised: str


class NormaliseFile(HasExamples):
    # whitespace-separated pairs of one traditional (or variant) character and its simplified form
    characters: Text
    # code points removed before matching (invisible characters, variation selectors)
    remove: tuple[Annotated[str, Field(min_length=1, max_length=1)], ...]
    # characters removed when they stand between two Chinese characters (自 杀, 自.杀, 自-杀)
    joiners: Text
    normalise_examples: tuple[NormaliseExample, ...] = Field(min_length=1)

    @field_validator("characters")
    @classmethod
    def _pairs(cls, value: str) -> str:
        seen: set[str] = set()
        for pair in value.split():
            if len(pair) != 2 or pair[0] == pair[1]:
                raise ValueError(f"{pair!r} is not a pair of two different characters")
            if pair[0] in seen:
                raise ValueError(f"{pair[0]!r} is mapped twice")
            seen.add(pair[0])
        return value


# ---------------------------------------------------------------- modifiers.yml


class Mask(Strict):
    """Text that looks like risk but is not (笑死我了, 《活着》): blanked out before signals are matched."""

    id: Name
    patterns: tuple[Text, ...] = Field(min_length=1)
    note: str | None = None


class Negation(Strict):
    negators: tuple[Text, ...] = Field(min_length=1)
    # words that may stand between the negator and the signal: 不[会]自杀, 没有[想过]死
    bridges: tuple[Text, ...] = ()
    # how many characters before a signal are searched for a negator
    window: Annotated[int, Field(ge=1, le=20)]
    # a negated signal followed by one of these in its clause is a worried question, not a denial:
    # 她不会想不开吧
    question_endings: tuple[Text, ...] = ()


class Resolution(Strict):
    past: tuple[Text, ...] = Field(min_length=1)
    resolved: tuple[Text, ...] = Field(min_length=1)
    recurrence: tuple[Text, ...] = Field(min_length=1)


class ThirdParty(Strict):
    self_words: tuple[Text, ...] = Field(min_length=1)
    others: tuple[Text, ...] = Field(min_length=1)


class ModifiersFile(HasExamples):
    clause_breaks: Text
    masks: tuple[Mask, ...] = Field(min_length=1)
    negation: Negation
    resolution: Resolution
    third_party: ThirdParty


# ---------------------------------------------------------------- signals/*.yml


class SignalSpec(Strict):
    id: SignalId
    patterns: tuple[Text, ...] = Field(min_length=1)
    note: str | None = None

    @field_validator("patterns")
    @classmethod
    def _no_named_groups(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for pattern in value:
            if "(?P<" in pattern or re.search(r"\(\?<[a-zA-Z]", pattern):
                raise ValueError(f"named groups are reserved for the engine: {pattern!r}")
        return value


class CategorySpec(Strict):
    id: Name
    name: Text
    description: Text
    # a negator just before the signal (不会, 没有, 从来没) turns it into a denial
    negatable: bool = True
    # 以前…, 现在好了 turns it into a resolved history
    resolvable: bool = False
    # a catch-all (signals/fail_safe.yml): its signals are kept only where no signal of another category
    # covers the same words, so 我想死 records ideation, not ideation and a death word
    fallback: bool = False
    signals: tuple[SignalSpec, ...] = Field(min_length=1)

    @model_validator(mode="after")
    def _ids_belong_to_category(self) -> CategorySpec:
        for signal in self.signals:
            if not signal.id.startswith(self.id + "."):
                raise ValueError(f"signal {signal.id} must be named {self.id}.<something>")
        return self


class SignalsFile(HasExamples):
    categories: tuple[CategorySpec, ...] = Field(min_length=1)


# ---------------------------------------------------------------- rules.yml


class Condition(Strict):
    """When a rule fires. Categories count only when a signal of theirs is present (not negated/resolved)."""

    all: tuple[Name, ...] = ()  # every one present
    any: tuple[Name, ...] = ()  # at least one present
    none: tuple[Name, ...] = ()  # none present
    denied: tuple[Name, ...] = ()  # at least one matched but negated or resolved
    third_party: bool | None = None  # a signal of the rule's categories is about someone else
    audience: Audience | None = None

    @model_validator(mode="after")
    def _not_empty(self) -> Condition:
        if not (self.all or self.any or self.denied):
            raise ValueError("a condition needs at least one of all, any or denied")
        return self

    def categories(self) -> tuple[str, ...]:
        return self.all + self.any + self.none + self.denied


class Rule(Strict):
    id: Name
    level: Level
    description: Text
    when: Condition


class RulesFile(HasExamples):
    rules: tuple[Rule, ...] = Field(min_length=1)


# ---------------------------------------------------------------- learned.yml


Probability = Annotated[float, Field(gt=0.0, lt=1.0)]


class LearnedThresholds(Strict):
    """The learned screen's scores (0..1) at or above which a message is at least orange, or red.

    `orange` applies to the at-risk head's score. `red` to the red head's, and only for a message already
    at orange or above (by either screen): the red head decides between orange and red, never makes a
    calm message red. Chosen on cross-validated scores (benchmarks/triage_eval.py prints them); a lower
    threshold catches more and raises more false alarms.
    """

    orange: Probability
    red: Probability | None = None
    # when the lexicon read the risk words and found them denied or past (我不会自杀的), the model needs
    # this higher score to raise the message: a denial is followed up (yellow), not treated as risk
    after_denial: Probability | None = None
    denial_rules: tuple[Name, ...] = ()
    # a message with fewer letters than this (punctuation and spaces not counted) is too short for the
    # model alone to raise: "今晚" or "我走了" says too little; it may still be asked about (unsure)
    min_chars: int = Field(default=0, ge=0)

    @model_validator(mode="after")
    def _ordered(self) -> LearnedThresholds:
        if self.after_denial is not None and self.after_denial < self.orange:
            raise ValueError("after_denial must not be below the orange threshold")
        if bool(self.denial_rules) != (self.after_denial is not None):
            raise ValueError("after_denial and denial_rules go together")
        return self


class Unsure(Strict):
    """When a message below orange is marked unsure, so the assistant may ask one gentle, direct question
    (issue 12: ask, don't guess). Marking opens no case and changes no level.

    `score_from`: the at-risk score from which a message is in the grey band (up to `orange`).
    `masked_death_word_with`: a death word read as an idiom (a mask) in a message with one of these
    categories (笑死了，反正我也没人在乎) is unsure too.
    """

    score_from: Probability
    masked_death_word_with: tuple[Name, ...] = ()
    # after asking, the assistant does not ask again for this many of the person's messages
    ask_again_after: int = Field(default=10, ge=0)


class LearnedFile(HasExamples):
    """The learned second screen: its thresholds, when to be unsure, and examples run through both screens."""

    thresholds: LearnedThresholds
    unsure: Unsure | None = None

    @model_validator(mode="after")
    def _grey_band_below_orange(self) -> LearnedFile:
        if self.unsure is not None and self.unsure.score_from >= self.thresholds.orange:
            raise ValueError("unsure.score_from must be below thresholds.orange")
        return self


# ---------------------------------------------------------------- intents.yml


class IntentExample(Strict):
    intent: str
    level: Level


GateOutcome = Literal["crisis", "ask", "none"]


class CrisisGate(Strict):
    """When a crisis intent that the NLU predicted for a message the screen put below orange opens a case
    (issue 12: the NLU's part). The NLU reads 死 in 笑死我了 or 我死党 as a crisis with high confidence, and
    the screen has already read the message (masks, both screens) and found it below orange, so the
    NLU alone does not open a case:

    - `crisis`: the confidence is at least `confirm_confidence` and the learned screen's at-risk score at
      least `confirm_score_from` (or there is no learned screen), and the lexicon did not read a denial
      (learned.yml's `denial_rules`: 我不会自杀的): the crisis path, a case;
    - `ask`: otherwise, when the confidence is at least `ask_confidence` and the score at least
      `ask_score_from`: one gentle question (learned.yml's `unsure`), no case; the answer decides;
    - `none`: a misreading (the screen is sure the message is calm, or the NLU unsure of it); the
      fallback reply.
    """

    confirm_confidence: Probability
    confirm_score_from: Probability
    ask_confidence: Probability
    ask_score_from: Probability

    @model_validator(mode="after")
    def _ordered(self) -> CrisisGate:
        if self.ask_confidence > self.confirm_confidence or self.ask_score_from > self.confirm_score_from:
            raise ValueError("the ask thresholds must not be above the confirm thresholds")
        return self


class GateExample(Strict):
    """One embedded example of the crisis gate: what the NLU and the screen said, and the outcome."""

    intent: str
    confidence: float = Field(ge=0.0, le=1.0)
    score: float | None = Field(default=None, ge=0.0, le=1.0)
    # the rule the lexicon decided by (a denial rule caps the outcome at "ask")
    rule: str | None = None
    outcome: GateOutcome
    note: str | None = None


class IntentsFile(Strict):
    """The level each Rasa intent stands for: a model's prediction reaches a level through the protocol."""

    intents: dict[Name, Level]
    intent_examples: tuple[IntentExample, ...] = Field(min_length=1)
    crisis_gate: CrisisGate
    crisis_gate_examples: tuple[GateExample, ...] = Field(min_length=1)


# ---------------------------------------------------------------- instruments/*.yml


class Option(Strict):
    value: int | str
    text: Text


class Item(Strict):
    id: Name
    text: Text


class Band(Strict):
    min: Annotated[int, Field(ge=0)]
    max: Annotated[int, Field(ge=0)]
    outcome: Name
    name: Text
    level: Level
    explanation: Text


class Trigger(Strict):
    """An item answer that overrides the total: PHQ-A item 9 above 0 leads to the ASQ, whatever the score."""

    item: Name
    min: Annotated[int, Field(ge=1)]
    level: Level
    next: Name | None = None
    outcome: Name
    explanation: Text


class Outcome(Strict):
    id: Name
    name: Text
    level: Level
    explanation: Text


class InstrumentExample(Strict):
    answers: dict[Name, int | str | bool]
    outcome: Name
    level: Level
    total: int | None = None
    next: Name | None = None


class InstrumentBase(Strict):
    id: Name
    name: Text
    title: Text  # how the assistant introduces it to the user
    ages: Text
    period: Text
    sources: tuple[Text, ...] = Field(min_length=1)
    wording_note: Text
    preamble: Text
    options: tuple[Option, ...] = Field(min_length=2)
    items: tuple[Item, ...] = Field(min_length=1)
    examples: tuple[InstrumentExample, ...] = Field(min_length=1)


class SumScore(InstrumentBase):
    """Items scored by their option value and summed; bands of the total map to outcomes and levels."""

    kind: Literal["sum_score"]
    bands: tuple[Band, ...] = Field(min_length=1)
    triggers: tuple[Trigger, ...] = ()

    @model_validator(mode="after")
    def _bands_cover_range(self) -> SumScore:
        values = [o.value for o in self.options]
        if not all(isinstance(v, int) for v in values):
            raise ValueError("a sum_score instrument needs integer option values")
        top = max(values) * len(self.items)  # type: ignore[operator]
        expected = 0
        for band in self.bands:
            if band.min != expected or band.max < band.min:
                raise ValueError(f"band {band.outcome} must start at {expected}")
            expected = band.max + 1
        if expected != top + 1:
            raise ValueError(f"bands must cover 0..{top}")
        ids = {i.id for i in self.items}
        for trigger in self.triggers:
            if trigger.item not in ids:
                raise ValueError(f"trigger names unknown item {trigger.item}")
        return self


class YesNoScreen(InstrumentBase):
    """The ASQ pattern: screening questions, then an acuity question when any answer is yes (or refused)."""

    kind: Literal["yes_no_screen"]
    acuity: Item
    # option values meaning yes, and those treated as yes (a refusal counts as positive)
    positive_values: tuple[int | str, ...] = Field(min_length=1)
    outcomes: tuple[Outcome, ...]

    @model_validator(mode="after")
    def _three_outcomes(self) -> YesNoScreen:
        if {o.id for o in self.outcomes} != {"negative", "non_acute_positive", "acute_positive"}:
            raise ValueError("outcomes must be negative, non_acute_positive and acute_positive")
        return self


InstrumentFile = Annotated[SumScore | YesNoScreen, Field(discriminator="kind")]
