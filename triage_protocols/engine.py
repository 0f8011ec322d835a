"""Screen one message against the protocol: find the signals, decide how each counts, apply the rules.

The steps, each small and deterministic:
1. normalise the text (traditional, full-width, invisible characters; see normalise.py);
2. blank out masks: idioms and hyperbole that only look like risk (笑死我了, 累得要死, 《活着》);
3. find every signal: each pattern is compiled once, and only the patterns whose key characters occur in
   the message are run (loader.py, prefix.py), which keeps a message far below a millisecond;
4. decide how each counts: negated (我不会自杀), resolved (以前想过, 现在好了; only where the category
   allows it and nothing says it came back), and whose it is (self, or a friend / a child: "other");
5. read the rules top to bottom (most serious first); the first that fires decides the level;
6. score the same text, masks blanked, with the learned second screen (learned/, thresholds in
   learned.yml): an at-risk head (orange) and a red head (red, only for a message already at orange).
   The higher of the two levels wins, and the assessment records both (the rule and signals of the
   lexicon; the model's version, scores and level). Without a trained model the lexicon screens alone
   and every assessment says so (`learned_status`);
7. mark a message below orange `unsure` when the model's score is in the grey band or a death word was
   read as an idiom in a low-mood message, so the assistant may ask (no level changes).

`screen` never raises: whatever it is given, it returns an Assessment. Should the engine itself fail (a bug,
not an input), the message gets ENGINE_ERROR_LEVEL so that a person looks at it, never a silent green.
"""

from __future__ import annotations

import logging
import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from functools import cache
from typing import Any

from triage_protocols.learned.model import Loaded, default_model
from triage_protocols.loader import Modifiers, Protocol, load_protocol
from triage_protocols.normalise import Normalised
from triage_protocols.results import (
    Assessment,
    Audience,
    LearnedVerdict,
    Level,
    Reason,
    Signal,
    Status,
    Subject,
)

log = logging.getLogger(__name__)

# A message the engine failed on (which the tests say cannot happen) still reaches a person.
ENGINE_ERROR_LEVEL = Level.YELLOW
# Longer input is cut here before screening; the gateway already refuses anything over 2,000 characters.
MAX_CHARS = 100_000
# How many recent messages of the conversation are taken into account.
MAX_CONTEXT = 5
_MASK_CHAR = "\x00"
# characters whose masking (an idiom, hyperbole) may hide a real wish to die in a low-mood message
_DEATH_CHARS = frozenset("死杀亡")
# the rule an assessment records when the learned screen, not the lexicon, set its level
LEARNED_RULE = "learned_screen"
# the category of the learned screen's own signal (`learned_screen.at_risk`, `learned_screen.red`)
LEARNED_CATEGORY = "learned_screen"


@dataclass(slots=True)
class _Hit:
    signal: str
    category: str
    start: int
    end: int
    status: Status
    subject: Subject
    resolvable: bool
    source: str = "text"


@dataclass(frozen=True, slots=True)
class _CompiledRule:
    id: str
    level: Level
    all: frozenset[str]
    any: frozenset[str]
    none: frozenset[str]
    denied: frozenset[str]
    uses: tuple[str, ...]
    third_party: bool | None
    audience: str | None
    order: int


class Screener:
    """Screens messages with one protocol. Build it once (it compiles nothing itself: the loader did).

    `learned` is the learned second screen: by default the trained model shipped beside the package
    (loaded once per process); `Loaded.off()` screens with the lexicon alone.
    """

    def __init__(self, protocol: Protocol, learned: Loaded | None = None) -> None:
        self.protocol = protocol
        self.learned = learned if learned is not None else default_model()
        self._mods: Modifiers = protocol.modifiers
        # character -> bit set of the patterns that may match a message containing it (see prefix.py)
        self._index: dict[str, int] = {}
        self._always = 0
        for number, matcher in enumerate(protocol.matchers):
            if matcher.keys is None:
                self._always |= 1 << number
                continue
            for c in matcher.keys:
                self._index[c] = self._index.get(c, 0) | 1 << number
        self._key_chars = frozenset(self._index)
        self._fallback = frozenset(c.id for c in protocol.categories.values() if c.fallback)
        self._rules = tuple(
            _CompiledRule(
                id=rule.id,
                level=rule.level,
                all=frozenset(rule.when.all),
                any=frozenset(rule.when.any),
                none=frozenset(rule.when.none),
                denied=frozenset(rule.when.denied),
                uses=rule.when.all + rule.when.any,
                third_party=rule.when.third_party,
                audience=rule.when.audience,
                order=order,
            )
            for order, rule in enumerate(protocol.rules)
        )
        # category -> positions of the rules that can only fire when that category matched (all, any, denied)
        rules_of: dict[str, set[int]] = {}
        for rule in self._rules:
            for category in rule.all | rule.any | rule.denied:
                rules_of.setdefault(category, set()).add(rule.order)
        self._rules_of = {category: frozenset(orders) for category, orders in rules_of.items()}
        self._nothing = {
            who: Assessment(
                Level.GREEN,
                "no_signal",
                (),
                protocol.version,
                who,
                (Reason("screen", "no_signal", Level.GREEN),),
            )
            for who in ("student", "parent")
        }
        # what the matching loop needs of each pattern, as plain tuples (attribute lookups cost here)
        self._patterns = tuple(
            (m.regex.search, m.signal, m.category, m.negatable, m.resolvable) for m in protocol.matchers
        )

    # ------------------------------------------------------------------ public

    def screen(self, text: Any, audience: Any = "student", context: Any = None) -> Assessment:
        """The assessment of one message; see the module docstring for the steps. Never raises."""
        who = _audience(audience)
        try:
            return self._screen(_text(text), who, _context(context))
        except Exception as error:  # noqa: BLE001 - the contract is "never raises"; log the kind, not the text
            log.error("triage engine failed (%s); message gets %s", type(error).__name__, ENGINE_ERROR_LEVEL)
            return Assessment(
                level=ENGINE_ERROR_LEVEL,
                rule="engine_error",
                signals=(),
                protocol_version=self.protocol.version,
                audience=who,
                reasons=(Reason("screen", "engine_error", ENGINE_ERROR_LEVEL),),
            )

    # ------------------------------------------------------------------ steps

    def _screen(self, text: str, audience: Audience, context: tuple[str, ...]) -> Assessment:
        normalised_text = self.protocol.normaliser(text)
        masked = self._masked(normalised_text.text, set(normalised_text.text))
        scores, status = self._learned(masked.replace(_MASK_CHAR, " "))
        idiom = _masked_death_word(normalised_text.text, masked)
        hits, normalised = self._hits_of(normalised_text, audience, masked)
        if not hits:
            # one immutable lexicon result serves every quiet message; the model's verdict is added to it
            nothing = self._nothing[audience]
            letters = _letters(normalised_text.text)
            return self._unsure(self._with_learned(nothing, scores, status, len(text), letters), scores, idiom)
        extra: list[tuple[_Hit, Any]] = []
        if context and any(h.status == "present" for h in hits):
            for offset, previous in enumerate(reversed(context), start=1):
                previous_hits, previous_span = self._hits(previous, audience)
                for hit in previous_hits:
                    if hit.status == "present":
                        hit.source = f"context[-{offset}]"
                        extra.append((hit, previous_span))
        rule = self._decide(hits, [h for h, _ in extra], audience)
        level, rule_id = (rule.level, rule.id) if rule else (Level.GREEN, "no_signal")
        signals = [
            Signal(h.signal, h.category, normalised(h.start, h.end), h.status, h.subject, h.source)
            for h in hits
        ]
        if extra and rule:
            # context signals are shown only where they helped decide; their spans index their own message
            used = set(rule.uses)
            signals += [
                Signal(h.signal, h.category, span(h.start, h.end), h.status, h.subject, h.source)
                for h, span in extra
                if h.category in used
            ]
        lexicon = Assessment(
            level=level,
            rule=rule_id,
            signals=tuple(signals),
            protocol_version=self.protocol.version,
            audience=audience,
            reasons=(Reason("screen", rule_id, level),),
        )
        letters = _letters(normalised_text.text)
        return self._unsure(self._with_learned(lexicon, scores, status, len(text), letters), scores, idiom)

    def _unsure(
        self, assessment: Assessment, scores: tuple[float, float | None] | None, idiom: bool
    ) -> Assessment:
        """Mark a message below orange that the screens are unsure of (learned.yml, `unsure`): its at-risk
        score is in the grey band, or a death word was read as an idiom in a low-mood message."""
        spec = self.protocol.unsure
        if spec is None or assessment.level.at_least(Level.ORANGE):
            return assessment
        reason = None
        if scores is not None and scores[0] >= spec.score_from:
            reason = "grey_band"
        elif idiom and not assessment.categories().isdisjoint(spec.masked_death_word_with):
            reason = "idiom_in_low_mood"
        return replace(assessment, unsure=reason) if reason else assessment

    def model_text(self, text: str) -> str:
        """What the learned screen reads of a message: normalised, with the known harmless forms (masks:
        笑死我了, 想死你们了, 《活着》) blanked, so both screens agree on what is harmless. Training reads the
        same (learned/train.py)."""
        return self._model_input(self.protocol.normaliser(_text(text)).text)

    def _model_input(self, normalised: str) -> str:
        return self._masked(normalised, set(normalised)).replace(_MASK_CHAR, " ")

    def _learned(self, normalised: str) -> tuple[tuple[float, float | None] | None, Any]:
        """The learned screen's scores of the text (at risk, red; None without a model), and its status."""
        model = self.learned.model
        if model is None:
            return None, self.learned.status
        try:
            return model.scores(normalised), "ok"
        except Exception as error:  # noqa: BLE001 - a failing model leaves the lexicon screening
            log.error("learned screen failed (%s); lexicon only for this message", type(error).__name__)
            return None, "failed"

    def _learned_level(self, at_risk: float, red: float | None, lexicon: Assessment, letters: int) -> Level:
        """The level the scores reach under learned.yml. A denial the lexicon read needs `after_denial`;
        a message shorter than `min_chars` letters is not raised by the model alone; the red head counts
        only for a message already at orange or above, by either screen."""
        thresholds = self.protocol.learned
        orange_at = thresholds.orange
        if lexicon.rule in thresholds.denial_rules and thresholds.after_denial is not None:
            orange_at = thresholds.after_denial
        level = Level.ORANGE if at_risk >= orange_at and letters >= thresholds.min_chars else Level.GREEN
        escalated = level == Level.ORANGE or lexicon.level.at_least(Level.ORANGE)
        if escalated and thresholds.red is not None and red is not None and red >= thresholds.red:
            return Level.RED
        return level

    def _with_learned(
        self,
        lexicon: Assessment,
        scores: tuple[float, float | None] | None,
        status: Any,
        length: int = 0,
        letters: int = 0,
    ) -> Assessment:
        """Both screens in one assessment: the higher level wins. The model's verdict is always recorded;
        when it raised the level, its rule and reason replace the lexicon's rule (and join its reasons),
        and a signal of its own (the whole message) says whose risk it is, as the gateway reads it."""
        if scores is None or self.learned.model is None:
            return Assessment(
                lexicon.level,
                lexicon.rule,
                lexicon.signals,
                lexicon.protocol_version,
                lexicon.audience,
                lexicon.reasons,
                None,
                status,
            )
        at_risk, red = scores
        verdict = LearnedVerdict(
            self.learned.model.version,
            round(at_risk, 4),
            self._learned_level(at_risk, red, lexicon, letters),
            None if red is None else round(red, 4),
        )
        raised = verdict.level.rank > lexicon.level.rank
        signals = lexicon.signals
        if raised:
            signals = (*signals, _learned_signal(verdict.level, lexicon, length))
        return Assessment(
            verdict.level if raised else lexicon.level,
            LEARNED_RULE if raised else lexicon.rule,
            signals,
            lexicon.protocol_version,
            lexicon.audience,
            (*lexicon.reasons, Reason("learned", verdict.model, verdict.level))
            if raised
            else lexicon.reasons,
            verdict,
            status,
        )

    def _hits(self, text: str, audience: Audience) -> tuple[list[_Hit], Any]:
        """Every signal in the text, with its status and subject. Positions are in the normalised text."""
        return self._hits_of(self.protocol.normaliser(text), audience)

    def _hits_of(
        self, normalised: Normalised, audience: Audience, masked: str | None = None
    ) -> tuple[list[_Hit], Any]:
        chars = set(normalised.text)
        t = masked if masked is not None else self._masked(normalised.text, chars)
        mods = self._mods
        hits: list[_Hit] = []
        candidates = self._always
        index = self._index
        for c in chars & self._key_chars:
            candidates |= index[c]
        patterns = self._patterns
        seen: dict[str, list[tuple[int, int]]] = {}
        may_resolve = False
        while candidates:
            low = candidates & -candidates
            candidates ^= low
            search, signal, category, negatable, resolvable = patterns[low.bit_length() - 1]
            found = search(t)  # a loop of search() costs far less than finditer() here
            while found is not None:
                start, end = found.span()
                found = search(t, end if end > start else start + 1)
                spans = seen.get(category)
                if spans is None:
                    seen[category] = [(start, end)]
                else:
                    covered = False
                    for s, e in spans:
                        if s <= start and end <= e:
                            covered = True  # another pattern of the same category already covers this text
                            break
                    if covered:
                        continue
                    spans.append((start, end))
                if negatable and self._negated(t, start, end):
                    hits.append(_Hit(signal, category, start, end, "negated", "self", resolvable))
                else:
                    hits.append(_Hit(signal, category, start, end, "present", "self", resolvable))
                    may_resolve = may_resolve or resolvable
        if self._fallback and hits:
            hits = self._without_covered_fallbacks(hits)
        if not hits:
            return hits, normalised.span
        self._set_subjects(t, hits, audience)
        if may_resolve:
            resolved = mods.resolved.search(t)
            if resolved and not mods.recurrence.search(t) and mods.past.search(t, 0, resolved.start()):
                for h in hits:
                    if h.resolvable and h.status == "present" and h.start < resolved.start():
                        h.status = "resolved"
        hits.sort(key=lambda h: (h.start, h.end, h.category))
        return hits, normalised.span

    def _without_covered_fallbacks(self, hits: list[_Hit]) -> list[_Hit]:
        """Drop catch-all hits (fallback categories) whose words another category's signal already covers."""
        fallback = self._fallback
        others = [(h.start, h.end) for h in hits if h.category not in fallback]
        return [
            h
            for h in hits
            if h.category not in fallback or not any(s < h.end and h.start < e for s, e in others)
        ]

    def _masked(self, t: str, chars: set[str]) -> str:
        """The text with every mask blanked out, same length, so positions stay valid."""
        keys = self._mods.mask_keys
        if keys is not None and keys.isdisjoint(chars):
            return t
        spans = [m.span() for m in self._mods.mask.finditer(t) if m.end() > m.start()]
        if not spans:
            return t
        parts: list[str] = []
        last = 0
        for start, end in spans:
            parts.append(t[last:start])
            parts.append(_MASK_CHAR * (end - start))
            last = end
        parts.append(t[last:])
        return "".join(parts)

    def _negated(self, t: str, start: int, end: int) -> bool:
        mods = self._mods
        if mods.negated_before.search(t, max(0, start - mods.window), start) is None:
            return False
        # "她不会想不开吧" is a worry, not a denial
        return not (mods.question_after is not None and mods.question_after.match(t, end))

    def _set_subjects(self, t: str, hits: list[_Hit], audience: Audience) -> None:
        """Whose risk each signal is: the last person named before it in its clause, else earlier on.

        Persons and clause breaks are found once per message; each signal then only looks them up.
        """
        last = max(hit.start for hit in hits)
        persons = [(m.end(), m.lastgroup == "other") for m in self._mods.person.finditer(t, 0, last)]
        default: Subject = "other" if audience == "parent" else "self"
        if not persons:
            for hit in hits:
                hit.subject = default
            return
        breaks = [m.start() for m in self._mods.clause_break.finditer(t)]
        for hit in hits:
            start = hit.start
            clause_start = 0
            for b in breaks:
                if b >= start:
                    break
                clause_start = b + 1
            last_before = last_in_clause = None
            for end, other in persons:
                if end > start:
                    break
                last_before = other
                if end > clause_start:
                    last_in_clause = other
            chosen = last_in_clause if last_in_clause is not None else last_before
            hit.subject = default if chosen is None else ("other" if chosen else "self")

    def _decide(self, hits: list[_Hit], extra: list[_Hit], audience: Audience) -> _CompiledRule | None:
        """The first rule, top to bottom, whose condition holds."""
        present: dict[str, list[_Hit]] = {}
        current: set[str] = set()
        denied: set[str] = set()
        for h in hits:
            if h.status == "present":
                present.setdefault(h.category, []).append(h)
                current.add(h.category)
            else:
                denied.add(h.category)
        for h in extra:
            present.setdefault(h.category, []).append(h)
        if not present and not denied:
            return None
        names = present.keys()
        candidates: set[int] = set()
        rules_of = self._rules_of
        for category in names | denied:
            if category in rules_of:
                candidates |= rules_of[category]
        rules = self._rules
        for order in sorted(candidates):
            rule = rules[order]
            if rule.audience is not None and rule.audience != audience:
                continue
            if rule.all and not rule.all.issubset(names):
                continue
            if rule.any and rule.any.isdisjoint(names):
                continue
            if rule.none and not rule.none.isdisjoint(names):
                continue
            if rule.denied and rule.denied.isdisjoint(denied):
                continue
            used = [c for c in rule.uses if c in present]
            if extra and used and not any(c in current for c in used):
                continue  # a rule fires on the context only when this message adds to it
            if rule.third_party is not None:
                other = any(h.subject == "other" for c in used for h in present[c])
                if other != rule.third_party:
                    continue
            return rule
        return None


def _learned_signal(level: Level, lexicon: Assessment, length: int) -> Signal:
    """The learned screen's entry among the signals when it raised the level. Whose risk: what the
    lexicon's signals say (someone else only when every one is about someone else), else the audience's
    default (a parent writes about their child)."""
    present = [s for s in lexicon.signals if s.status == "present"]
    if present:
        subject: Subject = "other" if all(s.subject == "other" for s in present) else "self"
    else:
        subject = "other" if lexicon.audience == "parent" else "self"
    kind = "red" if level == Level.RED else "at_risk"
    return Signal(f"{LEARNED_CATEGORY}.{kind}", LEARNED_CATEGORY, (0, length), "present", subject, "text")


def _letters(text: str) -> int:
    """How many letters a message has: characters that are neither white space nor punctuation nor
    symbols (Unicode categories Z*, P*, S*, C*), so "今晚！！" counts 2 and an emoji counts 0."""
    return sum(1 for c in text if unicodedata.category(c)[0] in "LN")


def _masked_death_word(normalised: str, masked: str) -> bool:
    """A mask blanked a death word (笑死, 累死了): an idiom, unless the rest of the message is low."""
    if masked is normalised:
        return False
    return any(m == _MASK_CHAR and c in _DEATH_CHARS for c, m in zip(normalised, masked, strict=True))


# ---------------------------------------------------------------------- input coercion (never raise)


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bytes):
        value = value.decode("utf-8", errors="replace")
    elif not isinstance(value, str):
        try:
            value = str(value)
        except Exception:  # noqa: BLE001 - an object whose __str__ fails is simply not text
            return ""
    return value[:MAX_CHARS]


def _audience(value: Any) -> Audience:
    return "parent" if isinstance(value, str) and value.strip().lower() == "parent" else "student"


def _context(value: Any) -> tuple[str, ...]:
    """Recent messages, oldest first: a sequence of texts, or a mapping with "recent"."""
    if value is None:
        return ()
    if isinstance(value, Mapping):
        value = value.get("recent", ())
    if isinstance(value, str) or not isinstance(value, Iterable):
        return ()
    try:
        items: Sequence[Any] = list(value)
    except Exception:  # noqa: BLE001
        return ()
    return tuple(_text(v) for v in items[-MAX_CONTEXT:] if v)


# ---------------------------------------------------------------------- module-level API


@cache
def default_screener() -> Screener:
    """The screener of the protocol shipped with this package, built once per process."""
    return Screener(load_protocol())


def screen(text: Any, audience: Any = "student", context: Any = None) -> Assessment:
    """Screen one message with the shipped protocol.

    `audience` is "student" or "parent" (anything else counts as "student"). `context` is optional: the
    user's recent messages, oldest first (a list of texts, or {"recent": [...]}); a rule may then combine a
    signal of this message with one said just before (我想死 … 今晚), but context alone never raises the
    level of a message that adds nothing.
    """
    return default_screener().screen(text, audience, context)
