"""Triage protocols: reviewable data and the small engine that runs it.

The protocol is YAML in `protocols/` (levels, signals, rules, modifiers, instruments, intents) and the
directory of hotlines in `directory/`; a clinical lead reviews those files, not Python. This package loads
and validates them once, and offers:

    screen(text, audience="student", context=None) -> Assessment     every inbound message
    score(name, answers) -> Result                                      ASQ, PHQ-A, GAD-7
    next_item(name, answers) -> Item | None                             the next question for a form
    instrument(name) -> Instrument                                      items, options, preamble, sources
    assess_intent(intent, audience) -> Assessment                       Rasa's intent, through the protocol
    gate_crisis_intent(intent, confidence, score) -> crisis|ask|none     does the NLU's crisis intent open a case
    combine(*assessments_or_results) -> Assessment                      highest level wins, reasons kept
    level_spec(level) -> LevelSpec                                      deadline, staffing, escalation steps

and a command line (`python -m triage_protocols assess | check`). The package stays pure Python with no
dependency on the gateway or Rasa.
"""

from triage_protocols.combine import assess_intent, combine, gate_crisis_intent
from triage_protocols.engine import screen
from triage_protocols.instruments import instrument, next_item, questions, score
from triage_protocols.loader import ProtocolError, load_protocol
from triage_protocols.models import LevelSpec
from triage_protocols.results import Assessment, Level, Reason, Result, Signal


def level_spec(level: Level | str) -> LevelSpec:
    """What a level means and asks for: response deadline, staffing (二包一, 三包一) and escalation steps."""
    return load_protocol().levels[Level(level)]


def protocol_version() -> str:
    """The version of the whole protocol set, as every assessment records it."""
    return load_protocol().version


__all__ = [
    "Assessment",
    "Level",
    "ProtocolError",
    "Reason",
    "Result",
    "Signal",
    "assess_intent",
    "combine",
    "gate_crisis_intent",
    "instrument",
    "level_spec",
    "load_protocol",
    "next_item",
    "protocol_version",
    "questions",
    "score",
    "screen",
]
