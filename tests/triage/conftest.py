"""Shared helpers of the triage tests: where the labelled development set is, and a copy of the protocol."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from triage_protocols.loader import PROTOCOLS

ROOT = Path(__file__).resolve().parents[2]
DEV_SET = ROOT.parent / "shared" / "eval" / "risk_dev.tsv"


@pytest.fixture
def protocol_copy(tmp_path: Path) -> Path:
    """A writable copy of the shipped protocol files, for tests that break them on purpose."""
    target = tmp_path / "protocols"
    shutil.copytree(PROTOCOLS, target)
    return target


def require_dev_set() -> Path:
    """The shared development set lives outside the repository (../shared/eval). Where a checkout has
    no such neighbour (a CI machine may not), these rows are skipped with the reason shown in the
    summary; the embedded examples and tests/triage/data/own_labelled.tsv still run everywhere."""
    if not DEV_SET.exists():
        pytest.skip(f"{DEV_SET.name} is not beside this checkout (../shared/eval)")
    return DEV_SET


def require_learned_model() -> None:
    """Tests of the two screens together need the trained learned screen (`make learned`, which `make test`
    runs first). Without it they are skipped on a developer's machine, with the reason shown, and fail
    when CI is set; screening itself still works on the lexicon alone (tests/triage/test_learned.py)."""
    from triage_protocols.learned.model import default_model

    loaded = default_model()
    if loaded.model is None:
        message = f"the learned screen is {loaded.status}: run `make learned`"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
