"""Combine what is known about one user at one moment: the screen, Rasa's intent, an instrument's result.

The highest level wins, and every reason is kept: a counsellor reading the case sees that the screen said
orange because of ideation and the ASQ then said red, not only "red". Rasa's intents reach a level through
`protocols/intents.yml`, so a model's prediction is read through the protocol like everything else.
"""

from __future__ import annotations

from triage_protocols.loader import Protocol, load_protocol
from triage_protocols.models import GateOutcome
from triage_protocols.results import Assessment, Audience, Level, Reason, Result, highest


def assess_intent(
    intent: str | None, audience: Audience = "student", protocol: Protocol | None = None
) -> Assessment:
    """The level an intent predicted by Rasa's NLU stands for (green when the protocol does not list it)."""
    loaded = protocol or load_protocol()
    name = intent or ""
    level = loaded.intents.intents.get(name, Level.GREEN)
    rule = f"intent:{name}" if name else "intent:none"
    return Assessment(level, rule, (), loaded.version, audience, (Reason("intent", name or "none", level),))


def gate_crisis_intent(
    intent: str | None,
    confidence: float,
    score: float | None,
    rule: str | None = None,
    protocol: Protocol | None = None,
) -> GateOutcome:
    """Whether a crisis intent the NLU predicted opens a case ("crisis"), leads to one gentle question
    ("ask") or was a misreading ("none"), under `crisis_gate` in intents.yml. `score` is the learned
    screen's at-risk score of the same message (None when it had no model: the confidence decides
    alone), `rule` the rule the lexicon decided by (a denial it read, 我不会自杀的, is asked about, never
    escalated by the NLU). Only for messages the screen put below orange: at orange the NLU is never
    asked. An intent the protocol does not put at orange or above is no crisis ("none")."""
    loaded = protocol or load_protocol()
    if not loaded.intents.intents.get(intent or "", Level.GREEN).at_least(Level.ORANGE):
        return "none"
    gate = loaded.intents.crisis_gate
    denied = rule is not None and rule in loaded.learned.denial_rules
    reaches = lambda least: score is None or score >= least  # noqa: E731 - a one-line test, used twice
    if confidence >= gate.confirm_confidence and reaches(gate.confirm_score_from) and not denied:
        return "crisis"
    if confidence >= gate.ask_confidence and reaches(gate.ask_score_from):
        return "ask"
    return "none"


def combine(*parts: Assessment | Result | None) -> Assessment:
    """One assessment from several: the highest level wins; the deciding rule is the first part at that level.

    Signals of every screen are kept, and so is each part's reasons, in the order given. None parts are
    skipped (a screen that did not run). With no part at all the result is green.
    """
    present = [p for p in parts if p is not None]
    if not present:
        version = load_protocol().version
        return Assessment(Level.GREEN, "no_signal", (), version, "student", ())
    level = highest(p.level for p in present)
    decider = next(p for p in present if p.level == level)
    rule = decider.rule if isinstance(decider, Assessment) else f"{decider.instrument}:{decider.outcome}"
    signals = tuple(s for p in present if isinstance(p, Assessment) for s in p.signals)
    reasons = tuple(r for p in present for r in _reasons(p))
    audience = next((p.audience for p in present if isinstance(p, Assessment)), "student")
    # the learned screen's verdict travels with the screen it belongs to (the first one that ran)
    screened = next((p for p in present if isinstance(p, Assessment) and p.learned_status != "not_run"), None)
    return Assessment(
        level,
        rule,
        signals,
        decider.protocol_version,
        audience,
        reasons,
        screened.learned if screened else None,
        screened.learned_status if screened else "not_run",
        # unsure only while nothing else put the moment at orange or above
        screened.unsure if screened and not level.at_least(Level.ORANGE) else None,
    )


def _reasons(part: Assessment | Result) -> tuple[Reason, ...]:
    if part.reasons:
        return part.reasons
    if isinstance(part, Assessment):
        return (Reason("screen", part.rule, part.level),)
    return (Reason(part.instrument, part.outcome, part.level),)
