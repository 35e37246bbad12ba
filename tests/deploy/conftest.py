"""Fixtures for the deployment tests."""

from __future__ import annotations

import pytest
from deploy_helpers import exported_names


@pytest.fixture(scope="session")
def metric_names() -> set[str]:
    """Every sample name a fresh ``Metrics`` exports."""
    return exported_names()
