"""Shared fixtures of the Python suite: a small real pool per test module."""

import pytest

import vial


@pytest.fixture(scope="module")
def pool():
    with vial.Pool(workers=2) as p:
        assert p.wait_ready(30), "the pool's workers did not start within 30 s"
        yield p
