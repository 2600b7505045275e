"""No test or fixture, whatever its scope, can reach the user's embedding cache (~/.cache/autolabel)."""

from __future__ import annotations

from pathlib import Path

import pytest

from autolabel.embedding.cache import default_cache_dir

from .conftest import SESSION_CACHES


@pytest.fixture(scope="module")
def cache_seen_by_module_fixtures() -> Path:
    """Module-scoped fixtures run before function-scoped autouse ones (the `labelled` export fixture is one)."""
    return default_cache_dir()


def test_module_scoped_fixtures_get_a_private_cache(cache_seen_by_module_fixtures: Path) -> None:
    assert cache_seen_by_module_fixtures == SESSION_CACHES / "autolabel"
