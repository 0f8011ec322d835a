"""Rasa's own checks, run in the engine environment: data validation and the conversation tests."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from tests.support import MODELS, RASA, ROOT, require_trained_model

TRAIN_ARGS = [
    "--config",
    "bot/config.yml",
    "--domain",
    "bot/domain",
    "--data",
    "data/nlu",
    "data/rules",
    "data/stories",
]
ENV = {
    **os.environ,
    "RASA_TELEMETRY_ENABLED": "false",
    "SQLALCHEMY_SILENCE_UBER_WARNING": "1",
    "TF_CPP_MIN_LOG_LEVEL": "2",
}


def rasa(*args: str, timeout: int = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(RASA), *args], check=False, cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=timeout
    )


def test_training_data_validates_without_warnings() -> None:
    require_trained_model()
    result = rasa("data", "validate", *TRAIN_ARGS, "--fail-on-warnings")
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]


def test_conversation_tests_pass_without_prediction_errors(tmp_path: Path) -> None:
    require_trained_model()
    result = rasa(
        "test",
        "core",
        "--model",
        str(MODELS),
        "--stories",
        "tests/conversations",
        "--fail-on-prediction-errors",
        "--out",
        str(tmp_path),
        "--no-plot",
    )
    failed = tmp_path / "failed_test_stories.yml"
    detail = failed.read_text(encoding="utf-8") if failed.exists() else ""
    assert result.returncode == 0, detail + result.stdout[-3000:] + result.stderr[-3000:]
