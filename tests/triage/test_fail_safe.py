"""The lexicon fails safe, on its own (without the learned screen): a word of death, suicide or self-harm
never ends at green unless the whole phrase is a known harmless form; a negation reaches only the words
it governs; the kinds of message that got through before (issue 12) escalate. One row a case, written
for this file (never copied from a blind batch)."""

from __future__ import annotations

import pytest

from triage_protocols import Level
from triage_protocols.engine import Screener
from triage_protocols.learned.model import Loaded
from triage_protocols.loader import load_protocol

LEXICON = Screener(load_protocol(), Loaded.off())

# (text, the lowest level it may get, the highest level it may get)
CASES: list[tuple[str, Level, Level]] = [
    # a death word no mask explains is never green
    ("死亡到底是什么感觉", Level.YELLOW, Level.RED),
    ("我家的仓鼠死了", Level.YELLOW, Level.RED),
    ("自杀的人会去哪里", Level.YELLOW, Level.RED),
    ("我不会自杀的，放心吧", Level.YELLOW, Level.YELLOW),
    ("没有想死啦，就是有点烦", Level.YELLOW, Level.YELLOW),
    # known harmless forms stay green
    ("笑死我了，这个视频", Level.GREEN, Level.GREEN),
    ("今天累死了", Level.GREEN, Level.GREEN),
    ("电脑死机了", Level.GREEN, Level.GREEN),
    ("他是我死党", Level.GREEN, Level.GREEN),
    ("想死你们了，明天见", Level.GREEN, Level.GREEN),
    ("我们在读《活着》", Level.GREEN, Level.GREEN),
    ("在游戏里又死了哈哈", Level.GREEN, Level.GREEN),
    # negation governs only its own words
    ("觉得自己没用 想死", Level.ORANGE, Level.RED),
    ("我真没用，好想死", Level.ORANGE, Level.RED),
    ("我没用，但我不想死", Level.YELLOW, Level.YELLOW),
    # means in use, with no word of death
    ("我现在正在划自己", Level.RED, Level.RED),
    ("我要割下去了", Level.RED, Level.RED),
    ("刀已经抵在脖子上了", Level.RED, Level.RED),
    # at a height or a window
    ("我坐在窗台上，脚已经伸到窗外了", Level.ORANGE, Level.RED),
    ("我一个人站在天台边上", Level.ORANGE, Level.RED),
    # farewells
    ("以后你们都见不到我了", Level.ORANGE, Level.RED),
    ("今晚之后你们就再也找不到我了", Level.ORANGE, Level.RED),
    # method and lethality questions
    ("从八楼跳下去会不会死", Level.ORANGE, Level.RED),
    ("吞下去会死吗", Level.ORANGE, Level.RED),
    ("割腕和跳楼哪个更痛苦", Level.ORANGE, Level.RED),
    ("什么死法最不痛苦", Level.ORANGE, Level.RED),
    # invitations to die together
    ("有人想一起死吗", Level.ORANGE, Level.RED),
    ("想找人一起自杀", Level.ORANGE, Level.RED),
    # bare death wishes, short or slangy
    ("想噶", Level.ORANGE, Level.RED),
    ("死了拉倒", Level.ORANGE, Level.RED),
    ("不活了", Level.ORANGE, Level.RED),
    # voices when nobody is there
    ("我老是听到有人喊我，但是旁边根本没有人", Level.ORANGE, Level.RED),
    # a diagnosed illness getting worse
    ("我的焦虑症最近变严重了", Level.ORANGE, Level.RED),
    ("停药以后越来越差了，抑郁又复发了", Level.ORANGE, Level.RED),
    # sextortion with a wish to die
    ("他说不给钱就把我的裸照发到群里，我真不想活了", Level.ORANGE, Level.RED),
]


@pytest.mark.parametrize(("text", "lowest", "highest"), CASES, ids=[c[0] for c in CASES])
def test_lexicon_fails_safe(text: str, lowest: Level, highest: Level) -> None:
    result = LEXICON.screen(text)
    assert lowest.rank <= result.level.rank <= highest.rank, (result.level, result.rule)
    assert result.learned_status == "off"


def test_a_death_word_is_recorded_only_where_nothing_else_covers_it() -> None:
    assert [s.category for s in LEXICON.screen("我想死").signals] == ["ideation"]
    assert [s.category for s in LEXICON.screen("死亡是什么").signals] == ["death_word"]
