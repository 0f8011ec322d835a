"""combine(): the highest level wins and every reason is kept; Rasa's intents map through the protocol."""

from __future__ import annotations

from triage_protocols import Level, assess_intent, combine, score, screen


def test_highest_level_wins_and_reasons_are_kept() -> None:
    first = screen("我最近一直想死")
    asq = score("asq", ["yes", "yes", "yes", "no", "yes"])
    combined = combine(first, asq)
    assert combined.level == Level.RED
    assert combined.rule == "asq:acute_positive"
    assert [(r.source, r.level) for r in combined.reasons] == [("screen", Level.ORANGE), ("asq", Level.RED)]
    assert combined.signals == first.signals


def test_first_part_at_the_top_level_decides() -> None:
    a = screen("我想死")
    b = assess_intent("suicidal_thoughts")
    assert combine(a, b).rule == a.rule
    assert combine(b, a).rule == "intent:suicidal_thoughts"


def test_none_parts_are_skipped_and_nothing_is_green() -> None:
    assert combine(None, screen("你好")).level == Level.GREEN
    assert combine().level == Level.GREEN


def test_intents_map_through_the_protocol() -> None:
    assert assess_intent("self_harm").level == Level.ORANGE
    assert assess_intent("exam_stress").level == Level.YELLOW
    assert assess_intent("greet").level == Level.GREEN
    assert assess_intent(None).level == Level.GREEN


def test_the_screen_can_raise_what_the_model_thought_harmless() -> None:
    combined = combine(assess_intent("chitchat"), screen("我在天台边上，往下看好高"))
    assert combined.level == Level.RED


def test_every_crisis_intent_of_the_domain_is_at_least_orange() -> None:
    for intent in (
        "suicidal_thoughts",
        "self_harm",
        "abuse",
        "friend_at_risk",
        "parent_child_self_harm",
        "parent_child_death_talk",
    ):
        assert assess_intent(intent).level.at_least(Level.ORANGE), intent


def test_level_specs_are_data() -> None:
    from triage_protocols import level_spec

    red = level_spec("red")
    assert red.respond_within_minutes == 0 and red.staffing.staff == 3 and red.staffing.family
    assert level_spec(Level.YELLOW).staffing.label == "二包一"
    assert level_spec("orange").staffing.label == "三包一"
    assert [s.id for s in level_spec("orange").steps][:2] == ["show_numbers", "run_asq"]
