"""Fixtures of the operations tests: a fake node and the operations over it."""

import pytest

from tests.unit.fakezfs import FakeZFS
from tests.unit.operations.test_volumes import ROOT, make_ops


@pytest.fixture
def fake():
    return FakeZFS(ROOT)


@pytest.fixture
def ops(fake):
    return make_ops(fake)
