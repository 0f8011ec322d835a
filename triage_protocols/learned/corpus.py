"""The texts the learned screen is trained on, each with its targets and a weight.

Two targets, one model each: `at_risk` (orange or red: the at-risk head) and `red` (imminent danger: the
red head, which only ever decides between orange and red; None where a row does not say).

Everything is read from files in the repository, so a fresh clone trains without `../shared`:

- `data/risk_corpus/psysuicide/valid.json`: real Chinese posts and counselling messages (PsySUICIDE, MIT,
  see its README). A row is at risk when any of its labels is about suicide or self-harm
  (`AT_RISK_LABELS`); rows labelled only "aggression by others" are left out (abuse or teasing: the
  label alone does not say which). The authors' `synthetic` rows train with a lower weight and never
  count in a figure (`Row.real`). For the red head its unrelated and passive-wish rows are "not red";
  plans, attempts, active intent and method questions may be red or orange, so they do not say.
- `tests/triage/data/own_labelled.tsv`: the team's labelled set (orange and red are at risk).
- `data/risk_corpus/everyday/everyday.tsv`: the team's calm statements of where one is and what one is
  doing, and answers to "are you safe now" (see its README): "我现在在…" is not a crisis.
- `data/risk_corpus/written/*.tsv`: 2,700 labelled messages written for training by helper sessions that
  saw only the level definitions (young students, teenagers, parents, and distress without risk; see its
  README), so the model meets the ways children and parents write (slang, homophones, no word for death)
  beyond our own set. Never a blind batch's writer, never a blind batch's rows.
- `data/nlu/*.yml`: the dialogue engine's training examples, everyday conversation in the way students
  and parents write (greetings, school, family, topics of distress), labelled through the protocol's
  `intents.yml`: a crisis intent is at risk (red or orange: not said), every other intent is not. Without
  them the model took 在吗 for a crisis. The NLU's held-out paraphrases (benchmarks/data/nlu_heldout.yml)
  are never trained on: they measure calm conversation.
- `data/guidance/*.yml`, `asked_as`: how parents ask about each family-education topic (written for the
  guidance by helpers who saw only the topics' titles), as calm parent questions: without them the model
  took 孩子偷拿钱 or 抽动症 for a child at risk. Only the topics listed in
  `data/risk_corpus/guidance_topics.yml` (added on purpose, once the retrained screen is re-validated;
  see that file), never the topics that may describe a child at risk (`may_describe_risk`), nor a
  phrasing the lexicon puts at orange or above.
- the examples embedded in the protocol files (`rules.yml`, `signals/*.yml`, `modifiers.yml` …), which
  carry the everyday traps (笑死, 死机, 《活着》) the lexicon was taught; `learned.yml`'s own examples are not
  trained on, so they stay a check of the model.

Never the development set or the blind batches: their figures must come from texts the screen never saw.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path

from triage_protocols.loader import Protocol, load_protocol
from triage_protocols.results import Level

ROOT = Path(__file__).resolve().parents[2]
PSYSUICIDE = ROOT / "data" / "risk_corpus" / "psysuicide" / "valid.json"
OWN_LABELLED = ROOT / "tests" / "triage" / "data" / "own_labelled.tsv"
EVERYDAY = ROOT / "data" / "risk_corpus" / "everyday" / "everyday.tsv"
WRITTEN = ROOT / "data" / "risk_corpus" / "written"
GUIDANCE = ROOT / "data" / "guidance"
GUIDANCE_TOPICS = ROOT / "data" / "risk_corpus" / "guidance_topics.yml"
NLU = ROOT / "data" / "nlu"
# Rasa's annotations inside an example: [孩子](who) or [孩子]{"entity": "who"} -> 孩子
_ENTITY = re.compile(r"\[([^\]]*)\](?:\([^)]*\)|\{[^}]*\})")

AT_RISK_LABELS = frozenset(
    {
        "自杀准备行为",
        "自杀计划",
        "自杀未遂",
        "主动自杀意图",
        "被动自杀意图",
        "自伤行为",
        "自伤意图",
        "关于自杀的探索",
    }
)
AMBIGUOUS_LABELS = frozenset({"他人攻击行为"})
# labels that may be red or orange (now, or some day?): the red head does not learn from them
MAYBE_RED_LABELS = frozenset({"自杀准备行为", "自杀计划", "自杀未遂", "主动自杀意图", "关于自杀的探索"})
SYNTHETIC_WEIGHT = 0.3
# the learned screen's own examples check the model; they are never trained on
NOT_TRAINED_ON = frozenset({"learned.yml"})
# the NLU's examples of a button's words ("我想了解：孩子说想死" names a guidance topic) are nobody's own
# words, so they say nothing of whether a message is calm
BUTTON_INTENTS = frozenset({"choose_topic"})


@dataclass(frozen=True, slots=True)
class Row:
    text: str
    at_risk: bool
    weight: float
    source: str  # "psysuicide:<data_source>", "own", "protocol:<file>"
    red: bool | None = None  # None: the row does not say (not used by the red head)
    audience: str = "student"

    @property
    def real(self) -> bool:
        """A real psysuicide text: the rows cross-validation figures are computed on."""
        return self.source.startswith("psysuicide:") and self.source != "psysuicide:synthetic"


def psysuicide(path: Path = PSYSUICIDE) -> list[Row]:
    rows = []
    for item in json.loads(path.read_text(encoding="utf-8")):
        labels = set(item["labels"])
        at_risk = bool(labels & AT_RISK_LABELS)
        if not at_risk and labels & AMBIGUOUS_LABELS:
            continue
        source = str(item["data_source"])
        weight = SYNTHETIC_WEIGHT if source == "synthetic" else 1.0
        red = None if labels & MAYBE_RED_LABELS else False
        rows.append(Row(str(item["text"]), at_risk, weight, f"psysuicide:{source}", red))
    return rows


def labelled_tsv(path: Path, source: str) -> list[Row]:
    """A `level<TAB>audience<TAB>text` file (header skipped), as training rows."""
    rows = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip() or (number == 1 and line.startswith("level\t")):
            continue
        level, audience, text = line.split("\t", 2)
        rows.append(
            Row(text, Level(level).at_least(Level.ORANGE), 1.0, source, Level(level) == Level.RED, audience)
        )
    return rows


def nlu_examples(protocol: Protocol, folder: Path = NLU) -> list[Row]:
    """The NLU's training examples, each at risk when the protocol maps its intent to orange or red."""
    import yaml

    rows = []
    for path in sorted(folder.glob("*.yml")):
        for block in (yaml.safe_load(path.read_text(encoding="utf-8")) or {}).get("nlu", []) or []:
            intent = str(block.get("intent", ""))
            if not intent or "examples" not in block or intent in BUTTON_INTENTS:
                continue
            level = protocol.intents.intents.get(intent.split("/")[0], Level.GREEN)
            at_risk = level.at_least(Level.ORANGE)
            for line in str(block["examples"]).splitlines():
                text = line.strip()
                if text.startswith("- ") and text[2:].strip():
                    example = _ENTITY.sub(r"\1", text[2:].strip())
                    rows.append(Row(example, at_risk, 1.0, f"nlu:{path.name}", None if at_risk else False))
    return rows


def parent_questions(protocol: Protocol, folder: Path = GUIDANCE, listed: Path = GUIDANCE_TOPICS) -> list[Row]:
    """How parents ask about the listed guidance topics that describe no risk, as calm parent questions
    (the lexicon's reading of each is checked, so a phrasing of risk is never taught as calm)."""
    import yaml

    from triage_protocols.engine import Screener
    from triage_protocols.learned.model import Loaded

    lexicon = Screener(protocol, Loaded.off())
    topics = set(yaml.safe_load(listed.read_text(encoding="utf-8"))["topics"])
    rows = []
    for path in sorted(folder.glob("*.yml")):
        if path.name.startswith("_") or path.stem not in topics:
            continue
        topic = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        if topic.get("may_describe_risk"):
            continue
        for question in topic.get("asked_as") or []:
            if not lexicon.screen(question, "parent").level.at_least(Level.ORANGE):
                rows.append(Row(str(question), False, 1.0, f"guidance:{path.stem}", False, "parent"))
    return rows


def protocol_examples(protocol: Protocol) -> list[Row]:
    """The embedded examples that stand on their own (those that need a conversation's context do not)."""
    rows = []
    for file, examples in sorted(protocol.examples.items()):
        if file in NOT_TRAINED_ON:
            continue
        for example in examples:
            if not example.context:
                rows.append(
                    Row(
                        example.text,
                        example.level.at_least(Level.ORANGE),
                        1.0,
                        f"protocol:{file}",
                        example.level == Level.RED,
                        example.audience,
                    )
                )
    return rows


def training_rows(protocol: Protocol | None = None) -> list[Row]:
    """Every training row, in a fixed order (so training is deterministic)."""
    loaded = protocol or load_protocol()
    return (
        psysuicide()
        + labelled_tsv(OWN_LABELLED, "own")
        + labelled_tsv(EVERYDAY, "everyday")
        + [row for path in sorted(WRITTEN.glob("*.tsv")) for row in labelled_tsv(path, f"written:{path.stem}")]
        + nlu_examples(loaded)
        + parent_questions(loaded)
        + protocol_examples(loaded)
    )


def fingerprint(rows: list[Row], params: dict[str, object]) -> str:
    """A short hash of the training rows and the parameters: the model's version, as assessments record it."""
    digest = hashlib.sha256()
    digest.update(json.dumps(params, sort_keys=True).encode())
    for row in rows:
        digest.update(f"{row.at_risk:d}\t{row.red}\t{row.weight}\t{row.source}\t{row.text}\n".encode())
    return digest.hexdigest()[:12]
