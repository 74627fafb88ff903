"""The teacher's body encoder sends the bytes the SDK would, images spliced not re-escaped."""

import base64
import os

from openai._utils._json import openapi_dumps

from pipeline.teacher.wire import BodyEncoder


def _uri(n: int = 3000) -> str:
    return "data:image/png;base64," + base64.b64encode(os.urandom(n)).decode()


def _body(*urls: str, text: str = 'what is in image_0.png? « ü » "quoted" \\ \x01') -> dict:
    parts = [{"type": "text", "text": text}]
    parts += [{"type": "image_url", "image_url": {"url": u, "detail": "high"}} for u in urls]
    return {
        "model": "m",
        "messages": [{"role": "system", "content": "sys"}, {"role": "user", "content": parts}],
        "temperature": 0.7,
        "seed": 3,
    }


def test_bytes_identical_to_the_sdk_over_turns():
    encoder = BodyEncoder()
    first, second = _uri(), _uri(5000)
    for body in (_body(first), _body(first, second), _body(first, second, first), _body()):
        assert encoder.encode(body) == openapi_dumps(body)


def test_unsafe_urls_are_encoded_by_json_not_spliced():
    encoder = BodyEncoder()
    for url in ('data:image/png;base64,AAAA"}', "data:image/png;base64,AA\nAA", 'https://x/a b.png?q="1"'):
        body = _body(url)
        assert encoder.encode(body) == openapi_dumps(body)


def test_placeholder_lookalike_text_is_left_alone():
    encoder = BodyEncoder()
    fake = f"\x00{encoder._nonce}:0\x00"
    body = _body(_uri(), text=fake)
    assert encoder.encode(body) == openapi_dumps(body)


def test_budget_evicts_oldest():
    encoder = BodyEncoder(budget_chars=10_000)
    uris = [_uri(3000) for _ in range(5)]
    for u in uris:
        encoder.encode(_body(u))
    assert uris[0] not in encoder._safe and uris[-1] in encoder._safe
    assert encoder._chars <= 10_000


def test_spliced_images_are_copied_as_bytes_not_widened_text():
    """A conversation with one non-ASCII character once made the whole body 2-byte text before
    encoding it (about four copies of every image per call); now each image is copied twice."""
    import tracemalloc

    encoder = BodyEncoder()
    uri = _uri(750_000)  # about 1 MB of base64
    body = _body(uri)  # its text holds « ü »
    encoder.encode(body)  # the URI is checked once, outside the measured call
    tracemalloc.start()
    try:
        encoded = encoder.encode(body)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert encoded == openapi_dumps(body)
    assert peak < 2.5 * len(uri), f"encoding allocated {peak / len(uri):.1f}x the image's size"
