"""Helpers the tests share: servers, fakes, worlds (``from tests.support.testkit import ...``)."""
