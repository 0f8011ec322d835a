"""The parents' tests use the custom-action fixtures (the real domain, a store of record)."""

from tests.unit.conftest import domain, recorded  # noqa: F401 - fixtures, used by name
