"""ms-swift agent rows, and trajforge's own `export ms-swift`.

Layout, from ms-swift's dataset documentation (swift.readthedocs.io, Instruction/Agent-support and
Customization/Custom-dataset; repository modelscope/ms-swift, `docs/source_en/Instruction/
Agent-support.md`): `{"tools": "<JSON string of OpenAI function schemas>", "messages": [...],
"images": [...]}` where `messages` holds `system` / `user` / `assistant` turns plus `tool_call`
turns (content: `{"name", "arguments"}` as JSON) and `tool_response` turns; an assistant turn
before a `tool_call` holds the thinking; `<image>` placeholders take `images` in order.
trajforge's own export writes the R1V4 text instead (assistant turns with `<tool_call>`, user
turns with `<observation>`), with absolute image paths; both read the same way as ShareGPT's
`messages`, so this reader is the ShareGPT walk under ms-swift's name.
"""

from __future__ import annotations

from typing import Any

from stages.synth.imports import sharegpt
from stages.synth.imports.base import Context, ImportRecord

NAME = "ms-swift"
TOOLS: dict[str, tuple[str, dict[str, str]]] = {}


def read(record: dict[str, Any], ctx: Context) -> ImportRecord:
    return sharegpt.read(record, ctx)
