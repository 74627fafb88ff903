"""Filter test fixtures: the loopback OpenAI server shared with the synth tests."""

from __future__ import annotations

import pytest

from tests.fake_openai import serve_fake_teachers


@pytest.fixture
def fake_teacher():
    yield from serve_fake_teachers()
