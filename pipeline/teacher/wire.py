"""JSON bytes of a chat-completions body, each base64 image checked once, not re-escaped per turn.

A conversation resends every image it has seen on every turn, as a base64 data URI of 100 KB to
1 MB. JSON-encoding such a string scans and copies it (about 6 ms for 800 KB here); the SDK did
that for every image on every turn, the largest single cost of a teacher call. Base64 data URIs
hold no character JSON escapes, so once a URI is known safe its JSON form is the string between
two quotes: the body's small remainder is encoded by `json.dumps` and the URIs are spliced in.
The bytes are identical to what the SDK would send (`openapi_dumps`: no ASCII escaping, compact
separators, NaN refused), which the tests check.
"""

from __future__ import annotations

import json
import re
import secrets
from collections import OrderedDict
from typing import Any

_DATA_URI = re.compile(r"data:image/[A-Za-z0-9.+-]+;base64,[A-Za-z0-9+/]*={0,2}")
#: Characters of checked URIs remembered (their strings are kept alive until evicted).
_BUDGET_CHARS = 64 << 20


class BodyEncoder:
    """Encodes request bodies; remembers which URI strings it has already checked."""

    def __init__(self, budget_chars: int = _BUDGET_CHARS) -> None:
        self._safe: OrderedDict[str, None] = OrderedDict()
        self._chars = 0
        self._budget = budget_chars
        self._nonce = secrets.token_hex(8)  # a placeholder no text can hold by accident
        self._hole = re.compile(rf'"\\u0000{self._nonce}:(\d+)\\u0000"')

    def encode(self, body: dict[str, Any]) -> bytes:
        uris: list[str] = []
        skeleton = dict(body)
        if isinstance(messages := body.get("messages"), list):
            skeleton["messages"] = [self._swap_message(m, uris) for m in messages]
        text = json.dumps(skeleton, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
        if not uris:
            return text.encode()
        pieces = self._hole.split(text)  # text, index, text, index, ..., text
        if pieces[1::2] != [str(i) for i in range(len(uris))]:  # the body's text held a lookalike
            return json.dumps(body, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode()
        # joined as bytes, not as text then encoded: one copy of the URIs rather than three, and
        # no widening of the whole body to 2-byte text when the conversation holds a non-ASCII
        # character (a checked URI is ASCII, so its bytes are a straight copy)
        chunks: list[bytes] = [pieces[0].encode()]
        for i in range(1, len(pieces), 2):
            chunks += (b'"', uris[int(pieces[i])].encode("ascii"), b'"', pieces[i + 1].encode())
        return b"".join(chunks)

    def _swap_message(self, message: Any, uris: list[str]) -> Any:
        if not isinstance(message, dict) or not isinstance(content := message.get("content"), list):
            return message
        return {**message, "content": [self._swap_part(p, uris) for p in content]}

    def _swap_part(self, part: Any, uris: list[str]) -> Any:
        if not isinstance(part, dict) or not isinstance(image := part.get("image_url"), dict):
            return part
        url = image.get("url")
        if not isinstance(url, str) or not self._is_safe(url):
            return part
        uris.append(url)
        return {**part, "image_url": {**image, "url": f"\x00{self._nonce}:{len(uris) - 1}\x00"}}

    def _is_safe(self, url: str) -> bool:
        """A base64 data URI (no quote, backslash or control character), checked once per string."""
        if url in self._safe:
            self._safe.move_to_end(url)
            return True
        if not url.startswith("data:") or not _DATA_URI.fullmatch(url):
            return False
        self._safe[url] = None
        self._chars += len(url)
        while self._chars > self._budget and self._safe:
            self._chars -= len(self._safe.popitem(last=False)[0])
        return True
