"""One live stack for the module: the real gateway, the stand-in engine and action server, one store."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.faults_live.driver import Stack


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    live = Stack(tmp_path_factory.mktemp("faults_live"))
    try:
        live.start()
        yield live
    finally:
        live.close()
