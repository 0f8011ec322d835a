"""The directory keeps working as before, and its regional file documents the shape a deployment fills in."""

from __future__ import annotations

from triage_protocols.directory import entries, hotline_list, load_directory

NATIONAL_LINES = [
    "☎ 110 报警电话：有人正在伤害你，或你现在有危险（24小时）",
    "☎ 120 急救电话：有人受伤、吃了药或需要马上救治（24小时）",
    "☎ 12356 全国心理援助热线：心里很难受，想找人说说（以当地接听时间为准）",
    "☎ 12355 青少年服务台：学习、家庭、同学关系上的困扰，或需要法律帮助（以当地接听时间为准）",
]


def test_hotline_list_for_national_entries_is_unchanged() -> None:
    assert hotline_list().splitlines()[: len(NATIONAL_LINES)] == NATIONAL_LINES


def test_regional_examples_cover_the_three_kinds_and_are_never_shown() -> None:
    _, regional = load_directory()
    kinds = {e.kind for e in regional.examples}
    assert kinds == {"school_counselling_room", "district_centre", "hospital"}
    assert all(e.opening_hours for e in regional.examples)
    shown = {e.id for e in entries()}
    assert not shown & {e.id for e in regional.examples}
    assert "000-0000" not in hotline_list()
