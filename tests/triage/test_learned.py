"""The learned second screen: deterministic training, loaded once, a missing model handled, both screens
recorded, the higher level winning, thresholds read from learned.yml. Figures (recall, false alarms,
speed) are in benchmarks/triage_eval.py, not here."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import yaml

from triage_protocols import Level, screen
from triage_protocols.engine import LEARNED_RULE, Screener, default_screener
from triage_protocols.learned import model as learned_model
from triage_protocols.learned.corpus import Row
from triage_protocols.learned.model import Loaded, default_model, load, load_or_report
from triage_protocols.learned.train import train
from triage_protocols.loader import ProtocolError, load_protocol

TINY = [
    Row("我不想活了", True, 1.0, "fixture"),
    Row("活着好累，想消失", True, 1.0, "fixture"),
    Row("每天都在想怎么解脱", True, 1.0, "fixture"),
    Row("感觉自己是多余的，没人需要我", True, 1.0, "fixture"),
    Row("今天天气很好", False, 1.0, "fixture"),
    Row("周末去打篮球", False, 1.0, "fixture"),
    Row("作业写完了，准备睡觉", False, 1.0, "fixture"),
    Row("妈妈做的饭很好吃", False, 0.3, "fixture"),
]
KEYS_READ_BY_THE_GATEWAY = {"level", "rule", "signals", "protocol_version"}


class Stub:
    """A model that gives every message the same scores (or fails), to test how the screens combine."""

    version = "stub0000"

    def __init__(self, score: float | None, red: float | None = None) -> None:
        self._score = score
        self._red = red

    def score(self, text: str) -> float:
        if self._score is None:
            raise RuntimeError("broken model")
        return self._score

    def red_score(self, text: str) -> float | None:
        return self._red

    def scores(self, text: str) -> tuple[float, float | None]:
        return self.score(text), self.red_score(text)


def screener(score: float | None, root: Path | None = None, red: float | None = None) -> Screener:
    return Screener(load_protocol(root), Loaded(Stub(score, red), "ok"))  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("learned")
    train(folder, TINY)
    return folder


def test_training_is_deterministic(tiny_model: Path, tmp_path: Path) -> None:
    again = tmp_path / "again"
    assert train(again, TINY) == load(tiny_model).version
    first, second = load(tiny_model), load(again)
    for text in ("我不想活了", "今天天气很好", "没人需要我", ""):
        assert first.score(text) == second.score(text)


def test_other_data_gives_another_version(tiny_model: Path, tmp_path: Path) -> None:
    assert train(tmp_path / "other", TINY[:-1]) != load(tiny_model).version


def test_the_fast_score_is_what_scikit_learn_computes(tiny_model: Path) -> None:
    model = load(tiny_model)
    for text in ("我不想活了", "今天天气很好，周末去打篮球", "完全没见过的字", "", "  "):
        expected = float(model.pipeline.predict_proba([text])[0, 1])
        assert model.score(text) == pytest.approx(expected, abs=1e-9)


def test_the_red_head_is_trained_and_scored_like_the_other(tmp_path: Path) -> None:
    rows = [
        *TINY,
        Row("药已经准备好了，今晚就吃", True, 1.0, "fixture", True),
        Row("我在楼顶，数到十就跳", True, 1.0, "fixture", True),
        Row("我不想活了", True, 1.0, "fixture", False),
    ]
    train(tmp_path, rows)
    model = load(tmp_path)
    assert model._red is not None
    for text in ("药准备好了", "今天天气很好", ""):
        expected = float(model._red.pipeline.predict_proba([text])[0, 1])
        assert model.red_score(text) == pytest.approx(expected, abs=1e-9)
        assert model.scores(text) == (model.score(text), model.red_score(text))


def test_without_red_rows_there_is_no_red_head(tiny_model: Path) -> None:
    assert load(tiny_model).red_score("药准备好了") is None


def test_the_model_learns_the_fixture(tiny_model: Path) -> None:
    model = load(tiny_model)
    assert model.score("我不想活了") > model.score("今天天气很好")


def test_the_default_model_is_loaded_once() -> None:
    assert default_model() is default_model()
    assert default_screener().learned is default_model()


def test_a_missing_model_leaves_the_lexicon_screening_and_says_so(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger=learned_model.__name__):
        loaded = load_or_report(tmp_path / "never-trained")
    assert loaded == Loaded(None, "missing")
    assert any("MISSING" in r.getMessage() for r in caplog.records)
    result = Screener(load_protocol(), loaded).screen("我已经吞了一整瓶安眠药")
    assert result.level == Level.RED
    data = result.to_dict()
    assert data["learned"] is None
    assert data["learned_status"] == "missing"
    assert Screener(load_protocol(), loaded).screen("你好").to_dict()["learned_status"] == "missing"


def test_an_unreadable_model_is_failed_not_fatal(tmp_path: Path) -> None:
    (tmp_path / learned_model.META_FILE).write_text('{"version": "x"}', encoding="utf-8")
    (tmp_path / learned_model.MODEL_FILE).write_bytes(b"not a model")
    assert load_or_report(tmp_path).status == "failed"


def test_a_model_failing_on_a_message_leaves_the_lexicon() -> None:
    result = screener(None).screen("我想死")
    assert result.level == Level.ORANGE
    assert result.rule == "ideation"
    assert result.learned_status == "failed"


def test_both_screens_are_recorded(tiny_model: Path) -> None:
    result = Screener(load_protocol(), Loaded(load(tiny_model), "ok")).screen("我真的不想活了")
    data = result.to_dict()
    assert KEYS_READ_BY_THE_GATEWAY <= set(data)
    assert data["rule"] == "ideation"
    assert [s["category"] for s in data["signals"]] == ["ideation"]
    assert set(data["learned"]) == {"model", "score", "red_score", "level"}
    assert data["learned"]["model"] == load(tiny_model).version
    assert 0.0 <= data["learned"]["score"] <= 1.0
    assert data["learned_status"] == "ok"
    assert result.summary()["learned_status"] == "ok"


def test_the_model_raises_a_message_the_lexicon_missed() -> None:
    result = screener(0.99).screen("今天作业好多")
    assert result.level == Level.ORANGE
    assert result.rule == LEARNED_RULE
    assert result.learned is not None and result.learned.level == Level.ORANGE
    assert ("learned", "stub0000", Level.ORANGE) in [tuple(r) for r in result.reasons]
    assert [(x.id, x.subject, x.span) for x in result.signals if x.category == "learned_screen"] == [
        ("learned_screen.at_risk", "self", (0, 6))
    ]


def test_the_models_signal_says_whose_risk_it_is() -> None:
    parent = screener(0.99).screen("孩子最近作业好多", "parent")
    assert [x.subject for x in parent.signals if x.category == "learned_screen"] == ["other"]
    raised = screener(0.0, red=0.99).screen("我同学说她最近总是想死")
    assert raised.level == Level.RED
    assert [x.subject for x in raised.signals if x.category == "learned_screen"] == ["other"]
    kept = screener(0.0).screen("我已经吞了一整瓶安眠药")
    assert all(x.category != "learned_screen" for x in kept.signals), "no entry when the model raised nothing"


def test_the_model_never_lowers_the_lexicon() -> None:
    result = screener(0.0).screen("我已经吞了一整瓶安眠药")
    assert result.level == Level.RED
    assert result.rule == "attempt_in_progress"
    assert result.learned is not None and result.learned.level == Level.GREEN
    assert [r.source for r in result.reasons] == ["screen"]


def test_the_red_head_decides_only_between_orange_and_red() -> None:
    red_at = load_protocol().learned.red
    assert red_at is not None
    calm = screener(0.0, red=0.99).screen("今天作业好多")
    assert calm.level == Level.GREEN, "the red head never makes a calm message red"
    orange = screener(0.0, red=0.99).screen("我最近总是想死")
    assert orange.level == Level.RED
    assert orange.rule == LEARNED_RULE
    assert orange.learned is not None and orange.learned.red_score == 0.99
    assert screener(0.0, red=red_at - 0.01).screen("我最近总是想死").level == Level.ORANGE
    assert screener(0.99, red=0.99).screen("今天作业好多").level == Level.RED


def test_a_denial_needs_a_surer_model() -> None:
    thresholds = load_protocol().learned
    assert thresholds.after_denial is not None
    below = (thresholds.orange + thresholds.after_denial) / 2
    assert screener(below).screen("我不会自杀的，你放心").level == Level.YELLOW
    assert screener(thresholds.after_denial).screen("我不会自杀的，你放心").level == Level.ORANGE


def _with_thresholds(protocol_copy: Path, **thresholds: object) -> Path:
    path = protocol_copy / "learned.yml"
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    data["thresholds"].update(thresholds)
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    return protocol_copy


def test_thresholds_come_from_the_protocol_file(protocol_copy: Path) -> None:
    root = _with_thresholds(protocol_copy, orange=0.95, red=0.98, after_denial=0.97)
    assert load_protocol(root).learned.orange == 0.95
    assert screener(0.9, root, red=0.99).screen("今天作业好多").level == Level.GREEN
    assert screener(0.96, root, red=0.97).screen("今天作业好多").level == Level.ORANGE
    assert screener(0.96, root, red=0.98).screen("今天作业好多").level == Level.RED


@pytest.mark.parametrize(
    "bad",
    [
        {"orange": 1.5},
        {"orange": 0.0},
        {"red": 1.0},
        {"after_denial": 0.5},
        {"denial_rules": ["no_such_rule"]},
        {"typo_threshold": 0.5},
    ],
)
def test_invalid_thresholds_do_not_load(protocol_copy: Path, bad: dict[str, object]) -> None:
    with pytest.raises(ProtocolError):
        load_protocol(_with_thresholds(protocol_copy, **bad))


def test_the_shipped_screen_uses_both() -> None:
    from tests.triage.conftest import require_learned_model

    require_learned_model()
    result = screen("感觉自己是个多余的人，消失了大家都会轻松")
    assert result.learned_status == "ok"
    assert result.learned is not None
    assert result.level.at_least(Level.ORANGE)


def test_a_score_in_the_grey_band_marks_a_calm_message_unsure() -> None:
    spec = load_protocol().unsure
    assert spec is not None
    thresholds = load_protocol().learned
    middle = (spec.score_from + thresholds.orange) / 2
    assert screener(middle).screen("今天作业好多").unsure == "grey_band"
    assert screener(middle).screen("今天作业好多").level == Level.GREEN, "asking changes no level"
    assert screener(spec.score_from - 0.01).screen("今天作业好多").unsure is None
    assert screener(0.99).screen("今天作业好多").unsure is None, "at orange the crisis path acts instead"
    assert screener(middle).screen("今天作业好多").to_dict()["unsure"] == "grey_band"


def test_an_idiom_in_a_low_mood_message_is_unsure_even_without_the_model() -> None:
    lexicon = Screener(load_protocol(), Loaded.off())
    assert lexicon.screen("笑死了，反正也没有人在乎我").unsure == "idiom_in_low_mood"
    assert lexicon.screen("笑死了，这个视频").unsure is None


@pytest.mark.parametrize(
    "unsure",
    [{"score_from": 0.95}, {"score_from": 0.4, "masked_death_word_with": ["no_such_category"]}],
)
def test_an_invalid_grey_band_does_not_load(protocol_copy: Path, unsure: dict[str, object]) -> None:
    path = protocol_copy / "learned.yml"
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    data["unsure"] = unsure
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    with pytest.raises(ProtocolError):
        load_protocol(protocol_copy)


def test_the_screen_trains_on_the_listed_calm_guidance_topics_only() -> None:
    # a topic joins the screen's training on purpose (data/risk_corpus/guidance_topics.yml), never by
    # being written for parents; a topic that may describe a child at risk is never calm
    from triage_protocols.learned.corpus import GUIDANCE, GUIDANCE_TOPICS, parent_questions

    listed = set(yaml.safe_load(GUIDANCE_TOPICS.read_text(encoding="utf-8"))["topics"])
    files = {path.stem: yaml.safe_load(path.read_text(encoding="utf-8")) for path in GUIDANCE.glob("[!_]*.yml")}
    assert listed <= set(files)
    assert not any(files[topic].get("may_describe_risk") for topic in listed)
    trained = {row.source.removeprefix("guidance:") for row in parent_questions(load_protocol())}
    assert trained == listed
    assert "pocket_money" in files and "pocket_money" not in trained
