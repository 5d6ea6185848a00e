"""Unit-test fixtures: the app's own Keybridge with Keycloak faked at its boundary, and its worker."""
from __future__ import annotations

import pytest

from adapter.worker import Worker
from tests.unit.fakes import FakeKeycloak


@pytest.fixture
def keycloak():
    return FakeKeycloak()


@pytest.fixture
def kb(app, keycloak):
    """The web app's own Keybridge, talking to the fake Keycloak (the worker shares it)."""
    kb = app.extensions["keybridge"]
    kb.keycloak = keycloak
    kb.delegation_keycloak = keycloak  # the delegation client's calls land in the same fake realm
    return kb


@pytest.fixture
def worker(kb):
    return Worker(kb)
