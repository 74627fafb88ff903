"""Eval test helpers: the loopback OpenAI server and small benchmark files in published layouts."""

from __future__ import annotations

import pytest

from tests.fake_openai import serve_fake_teachers


@pytest.fixture
def fake_teacher():
    yield from serve_fake_teachers()
