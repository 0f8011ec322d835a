"""The directory of hotlines and referral places, loaded and validated from the YAML beside this file."""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field

HERE = Path(__file__).parent


Kind = Literal["emergency", "hotline", "school_counselling_room", "district_centre", "hospital", "other"]
Day = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun", "holidays"]


class OpeningHours(BaseModel):
    """When a place answers, for a later "open now" check; `Entry.hours` stays the text a user reads."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    days: tuple[Day, ...]
    opens: str = Field(pattern=r"^([01][0-9]|2[0-3]):[0-5][0-9]$")
    closes: str = Field(pattern=r"^([01][0-9]|2[0-4]):[0-5][0-9]$")


class Entry(BaseModel):
    """One number or place. The first six fields are what a user reads; the optional rest serve referrals."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str
    name: str
    number: str
    hours: str
    when: str
    urgent: bool = False
    kind: Kind | None = None
    address: str | None = None
    opening_hours: tuple[OpeningHours, ...] = ()
    takes_referrals: bool = False  # receives referrals from the triage protocol (orange and red cases)
    ages: str | None = None
    note: str | None = None  # for staff; never shown to a user


class Directory(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    version: str
    line_format: str | None = None  # set once, in national.yml
    entries: tuple[Entry, ...]
    # entries that document the shape of a file for whoever fills it in; validated, never shown to a user
    examples: tuple[Entry, ...] = ()


def _read(path: Path) -> Directory:
    return Directory.model_validate(yaml.safe_load(path.read_text(encoding="utf-8")))


@cache
def load_directory() -> tuple[Directory, Directory]:
    """The national file and the deployment's regional file, validated."""
    return _read(HERE / "national.yml"), _read(HERE / "regional.yml")


def entries() -> tuple[Entry, ...]:
    """National numbers first, then the deployment's regional entries."""
    national, regional = load_directory()
    return national.entries + regional.entries


@cache
def hotline_list() -> str:
    """The numbers as the lines a user reads: urgent ones first, each with when to call it."""
    national, _ = load_directory()
    line = national.line_format or "{number} {name}"
    ordered = sorted(entries(), key=lambda e: not e.urgent)
    return "\n".join(line.format(**e.model_dump()) for e in ordered)
