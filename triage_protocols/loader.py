"""Read every protocol file, validate it, check the files against each other, and compile the patterns once.

A protocol that does not load must never screen: `load_protocol` raises `ProtocolError` listing every
problem it found (file and entry), and `python -m triage_protocols check` prints them. The default
protocol is loaded once per process; `screen` then only runs precompiled regular expressions.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, TypeAdapter, ValidationError

from triage_protocols.models import (
    CategorySpec,
    Example,
    FollowUpStep,
    InstrumentFile,
    IntentsFile,
    LearnedFile,
    LearnedThresholds,
    LevelsFile,
    LevelSpec,
    ModifiersFile,
    NormaliseFile,
    Rule,
    RulesFile,
    SignalsFile,
    SumScore,
    TermsFile,
    Unsure,
    VersionFile,
    YesNoScreen,
)
from triage_protocols.normalise import Normaliser
from triage_protocols.prefix import first_chars, key_chars, lookahead
from triage_protocols.results import Level

PROTOCOLS = Path(__file__).parent / "protocols"
_TERM = re.compile(r"\{([a-z][a-z0-9_]*)\}")
_SPACE = re.compile(r"\s+")
_INSTRUMENT = TypeAdapter(InstrumentFile)


class ProtocolError(Exception):
    """The protocol files are invalid; `problems` lists each one as "file: what is wrong"."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


@dataclass(frozen=True, slots=True)
class PatternMatcher:
    """One compiled pattern of one signal.

    Each pattern is compiled on its own, with the characters of which every match contains one (`keys`,
    see prefix.py): the engine runs only the patterns whose keys occur in the message, typically a dozen
    of several hundred, which is what keeps screening far below a millisecond.
    """

    signal: str
    category: str
    negatable: bool
    resolvable: bool
    regex: re.Pattern[str]
    keys: frozenset[str] | None  # None: unknown, always run


@dataclass(frozen=True, slots=True)
class Modifiers:
    clause_break: re.Pattern[str]  # one clause-breaking character
    mask: re.Pattern[str]  # every mask, one alternation
    mask_keys: frozenset[str] | None  # characters of which every mask contains one (None: unknown)
    negated_before: re.Pattern[str]  # matched against the window before a signal, anchored at its end
    question_after: re.Pattern[str] | None  # matched against the rest of the clause after a signal
    past: re.Pattern[str]
    resolved: re.Pattern[str]
    recurrence: re.Pattern[str]
    person: re.Pattern[str]  # groups "me" and "other"
    window: int


@dataclass(frozen=True)
class Protocol:
    """Everything the engine, the instruments and `check` need, validated and compiled."""

    version: str
    root: Path
    levels: dict[Level, LevelSpec]
    follow_up_plans: dict[str, tuple[FollowUpStep, ...]]
    categories: dict[str, CategorySpec]
    matchers: tuple[PatternMatcher, ...]
    modifiers: Modifiers
    rules: tuple[Rule, ...]
    instruments: dict[str, SumScore | YesNoScreen]
    intents: IntentsFile
    normaliser: Normaliser
    normalise_spec: NormaliseFile
    # score thresholds of the learned second screen, and when to be unsure (learned.yml)
    learned: LearnedThresholds
    unsure: Unsure | None
    # every file's examples, by the file's path relative to the protocols folder
    examples: dict[str, tuple[Example, ...]] = field(default_factory=dict)
    files: tuple[str, ...] = ()


def _read(path: Path, model: Any, problems: list[str], root: Path) -> Any:
    name = path.relative_to(root).as_posix()
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as error:
        problems.append(f"{name}: cannot read: {error}")
        return None
    try:
        if isinstance(model, TypeAdapter):
            return model.validate_python(data)
        assert issubclass(model, BaseModel)
        return model.model_validate(data)
    except ValidationError as error:
        for e in error.errors():
            where = ".".join(str(p) for p in e["loc"])
            problems.append(f"{name}: {where}: {e['msg']}")
        return None


def _expand(pattern: str, terms: dict[str, str], where: str, problems: list[str]) -> str:
    """Replace each {term} by its fragment (terms may use terms), as a non-capturing group.

    White space in patterns and terms is ignored, so long alternations can be folded over several lines
    in YAML; write \\s or \\x20 where a pattern really needs a space.
    """
    pattern = _SPACE.sub("", pattern)
    for _ in range(6):
        unknown = [m.group(1) for m in _TERM.finditer(pattern) if m.group(1) not in terms]
        if unknown:
            problems.append(f"{where}: unknown term(s) {sorted(set(unknown))} in {pattern!r}")
            return pattern
        expanded = _TERM.sub(lambda m: f"(?:{_SPACE.sub('', terms[m.group(1)])})", pattern)
        if expanded == pattern:
            return pattern
        pattern = expanded
    problems.append(f"{where}: terms nest too deeply (a term refers to itself?)")
    return pattern


def _compile(pattern: str, where: str, problems: list[str]) -> re.Pattern[str] | None:
    try:
        return re.compile(pattern)
    except re.error as error:
        problems.append(f"{where}: invalid pattern {pattern!r}: {error}")
        return None


def _alternation(patterns: list[str]) -> str:
    return "|".join(f"(?:{p})" for p in patterns)


def _top_level_alternatives(pattern: str) -> list[str]:
    """`a|b(c|d)|[|]` -> ["a", "b(c|d)", "[|]"]: the branches of the outermost alternation.

    Each branch becomes its own matcher with its own key characters, so a branch with rare characters is
    not run on every message because a sibling branch starts with a common one.
    """
    parts, depth, start, i, in_class = [], 0, 0, 0, False
    while i < len(pattern):
        c = pattern[i]
        if c == "\\":
            i += 2
            continue
        if in_class:
            in_class = c != "]" or pattern[i - 1] == "["
        elif c == "[":
            in_class = True
            if pattern[i + 1 : i + 2] == "^":
                i += 1
            if pattern[i + 1 : i + 2] == "]":
                i += 1
        elif c == "(":
            depth += 1
        elif c == ")":
            depth -= 1
        elif c == "|" and depth == 0:
            parts.append(pattern[start:i])
            start = i + 1
        i += 1
    parts.append(pattern[start:])
    return parts


def _compile_category(
    spec: CategorySpec, terms: dict[str, str], where: str, problems: list[str], weight: Callable[[str], float]
) -> list[PatternMatcher]:
    matchers = []
    for signal in spec.signals:
        # branches of all patterns of the signal, grouped by their key characters: one search per group
        groups: dict[frozenset[str] | None, list[str]] = {}
        for raw in signal.patterns:
            whole = _expand(raw, terms, f"{where}: {signal.id}", problems)
            compiled = _compile(whole, f"{where}: {signal.id}", problems)
            if compiled is None:
                continue
            if compiled.match(""):
                problems.append(f"{where}: {signal.id}: pattern {raw!r} matches empty text")
                continue
            for branch in _top_level_alternatives(whole):
                groups.setdefault(key_chars(branch, weight), []).append(branch)
        for keys, branches in groups.items():
            regex, _first = _compile_fast(_alternation(branches), f"{where}: {signal.id}", problems)
            if regex is not None:
                matchers.append(
                    PatternMatcher(signal.id, spec.id, spec.negatable, spec.resolvable, regex, keys)
                )
    return matchers


def _compile_fast(
    pattern: str, where: str, problems: list[str]
) -> tuple[re.Pattern[str] | None, frozenset[str] | None]:
    """Compile with a lookahead on the possible first characters, when known (see prefix.py)."""
    if _compile(pattern, where, problems) is None:
        return None, None
    first = first_chars(pattern)
    if first is None:
        return re.compile(pattern), None
    return re.compile(f"{lookahead(first)}(?:{pattern})"), first


def _compile_modifiers(
    spec: ModifiersFile, terms: dict[str, str], problems: list[str], weight: Callable[[str], float]
) -> Modifiers | None:
    where = "modifiers.yml"
    x = lambda ps: [_expand(p, terms, where, problems) for p in ps]
    masks = [p for m in spec.masks for p in x(m.patterns)]
    for p in masks:
        compiled = _compile(p, where, problems)
        if compiled is not None and compiled.match(""):
            problems.append(f"{where}: mask {p!r} matches empty text")
    neg = spec.negation
    negated = (
        f"(?:{_alternation(x(neg.negators))})(?:{_alternation(x(neg.bridges))})?$"
        if neg.bridges
        else (f"(?:{_alternation(x(neg.negators))})$")
    )
    third = spec.third_party
    person = f"(?P<me>{_alternation(x(third.self_words))})|(?P<other>{_alternation(x(third.others))})"
    breaks = "[" + re.escape(spec.clause_breaks) + "]"
    compiled = {
        "clause_break": _compile(breaks, where, problems),
        "mask": _compile(_alternation(masks), where, problems),
        "mask_keys": key_chars(_alternation(masks), weight),
        "negated_before": _compile_fast(negated, where, problems)[0],
        "question_after": _compile(
            f"[^{re.escape(spec.clause_breaks)}]*?(?:{_alternation(x(neg.question_endings))})"
            f"(?:[{re.escape(spec.clause_breaks)}]|$)",
            where,
            problems,
        )
        if neg.question_endings
        else None,
        "past": _compile_fast(_alternation(x(spec.resolution.past)), where, problems)[0],
        "resolved": _compile_fast(_alternation(x(spec.resolution.resolved)), where, problems)[0],
        "recurrence": _compile_fast(_alternation(x(spec.resolution.recurrence)), where, problems)[0],
        "person": _compile_fast(person, where, problems)[0],
    }
    if any(v is None for k, v in compiled.items() if k not in ("question_after", "mask_keys")):
        return None
    compiled["mask"] = _compile_fast(_alternation(masks), where, problems)[0]
    return Modifiers(window=neg.window, **compiled)  # type: ignore[arg-type]


def _check_references(
    categories: dict[str, CategorySpec],
    rules: tuple[Rule, ...],
    examples: dict[str, tuple[Example, ...]],
    instruments: dict[str, SumScore | YesNoScreen],
    problems: list[str],
) -> None:
    seen_rules: set[str] = set()
    previous = Level.RED
    for rule in rules:
        if rule.level.rank > previous.rank:
            problems.append(
                f"rules.yml: rule {rule.id} ({rule.level}) comes after a {previous} rule; "
                "rules are read top to bottom, most serious first"
            )
        previous = rule.level
        if rule.id in seen_rules:
            problems.append(f"rules.yml: rule {rule.id} is defined twice")
        seen_rules.add(rule.id)
        for name in rule.when.categories():
            if name not in categories:
                problems.append(f"rules.yml: rule {rule.id} names unknown category {name}")
    for file, items in examples.items():
        for example in items:
            for name in example.signals:
                if name not in categories:
                    problems.append(f"{file}: example {example.text!r} expects unknown category {name}")
    for name, spec in instruments.items():
        ids = [item.id for item in spec.items] + ([spec.acuity.id] if isinstance(spec, YesNoScreen) else [])
        if len(ids) != len(set(ids)):
            problems.append(f"instruments/{name}.yml: item ids are not unique")
        if isinstance(spec, SumScore):
            for trigger in spec.triggers:
                if trigger.next and trigger.next not in instruments:
                    problems.append(
                        f"instruments/{name}.yml: trigger leads to unknown instrument {trigger.next}"
                    )


# Characters found in almost every Chinese message (function words, pronouns, common verbs). Chosen by
# hand; only used to prefer other characters as keys (see _commonness), never to decide anything.
_EVERYDAY = set(
    "的一是不了人我在有他这个们中来上大为和地到以说时要就出会可也你对能而子那得着下之过后里用道所然家事"
    "多么去都同现当没动看天还好小些样心她前但只从想已把很最被什等给再才让跟怎啊吗吧呢嗯哦哈又自己"
)


def _commonness(files: list[Any]) -> Callable[[str], float]:
    """How common each character is in messages, estimated from the protocol's own example messages.

    Used only to choose which characters a pattern is skipped on (prefix.key_chars): rarer is better.
    """
    counts: Counter[str] = Counter()
    for spec in files:
        for example in getattr(spec, "examples", ()):
            counts.update(set(example.text))
    return lambda c: 1.0 + counts[c] + (200.0 if c in _EVERYDAY else 0.0)


def load_protocol(root: Path | None = None) -> Protocol:
    """Load, validate and compile the protocol in `root` (default: the one shipped in this package)."""
    if root is None:
        return _default()
    return _load(root)


@cache
def _default() -> Protocol:
    return _load(PROTOCOLS)


def _load(root: Path) -> Protocol:
    problems: list[str] = []
    version: VersionFile | None = _read(root / "version.yml", VersionFile, problems, root)
    levels: LevelsFile | None = _read(root / "levels.yml", LevelsFile, problems, root)
    terms: TermsFile | None = _read(root / "terms.yml", TermsFile, problems, root)
    normalise: NormaliseFile | None = _read(root / "normalise.yml", NormaliseFile, problems, root)
    modifiers: ModifiersFile | None = _read(root / "modifiers.yml", ModifiersFile, problems, root)
    rules: RulesFile | None = _read(root / "rules.yml", RulesFile, problems, root)
    intents: IntentsFile | None = _read(root / "intents.yml", IntentsFile, problems, root)
    learned: LearnedFile | None = _read(root / "learned.yml", LearnedFile, problems, root)
    signal_paths = sorted((root / "signals").glob("*.yml"))
    instrument_paths = sorted((root / "instruments").glob("*.yml"))
    if not signal_paths:
        problems.append("signals/: no signal files")
    signal_files = {
        p.relative_to(root).as_posix(): _read(p, SignalsFile, problems, root) for p in signal_paths
    }
    instrument_files = {p.stem: _read(p, _INSTRUMENT, problems, root) for p in instrument_paths}
    if problems:
        raise ProtocolError(problems)
    assert version and levels and terms and normalise and modifiers and rules and intents and learned

    term_map = dict(terms.terms)
    for name, fragment in term_map.items():
        _compile(_expand(fragment, term_map, f"terms.yml: {name}", problems), f"terms.yml: {name}", problems)

    weight = _commonness([levels, terms, normalise, modifiers, rules, *signal_files.values()])
    categories: dict[str, CategorySpec] = {}
    matchers: list[PatternMatcher] = []
    signal_ids: set[str] = set()
    for file, spec in signal_files.items():
        assert spec is not None
        for category in spec.categories:
            if category.id in categories:
                problems.append(f"{file}: category {category.id} is defined twice")
                continue
            categories[category.id] = category
            for signal in category.signals:
                if signal.id in signal_ids:
                    problems.append(f"{file}: signal {signal.id} is defined twice")
                signal_ids.add(signal.id)
            matchers += _compile_category(category, term_map, file, problems, weight)
    compiled_modifiers = _compile_modifiers(modifiers, term_map, problems, weight)

    instruments: dict[str, SumScore | YesNoScreen] = {}
    for name, spec in instrument_files.items():
        assert spec is not None
        if spec.id != name:
            problems.append(f"instruments/{name}.yml: id {spec.id} must match the file name")
        instruments[spec.id] = spec

    examples: dict[str, tuple[Example, ...]] = {
        "levels.yml": levels.examples,
        "terms.yml": terms.examples,
        "normalise.yml": normalise.examples,
        "modifiers.yml": modifiers.examples,
        "rules.yml": rules.examples,
        "learned.yml": learned.examples,
    }
    for file, spec in signal_files.items():
        assert spec is not None
        examples[file] = spec.examples
    _check_references(categories, rules.rules, examples, instruments, problems)
    rule_ids = {rule.id for rule in rules.rules}
    for name in learned.thresholds.denial_rules:
        if name not in rule_ids:
            problems.append(f"learned.yml: denial_rules names unknown rule {name}")
    for name in learned.unsure.masked_death_word_with if learned.unsure else ():
        if name not in categories:
            problems.append(f"learned.yml: unsure names unknown category {name}")
    if problems or compiled_modifiers is None:
        raise ProtocolError(problems or ["modifiers.yml: could not be compiled"])

    files = [
        "version.yml",
        "levels.yml",
        "terms.yml",
        "normalise.yml",
        "modifiers.yml",
        "rules.yml",
        "intents.yml",
        "learned.yml",
    ]
    files += list(signal_files) + [f"instruments/{n}.yml" for n in instrument_files]
    return Protocol(
        version=version.version,
        root=root,
        levels={spec.id: spec for spec in levels.levels},
        follow_up_plans=dict(levels.follow_up_plans),
        categories=categories,
        matchers=tuple(matchers),
        modifiers=compiled_modifiers,
        rules=rules.rules,
        instruments=instruments,
        intents=intents,
        normaliser=Normaliser(normalise),
        normalise_spec=normalise,
        learned=learned.thresholds,
        unsure=learned.unsure,
        examples=examples,
        files=tuple(files),
    )
