"""Versioned prompt templates: `prompts/<name>.<version>.txt`.

One owner for every prompt trajforge sends: executors (DeepResearch, General), the planner, and
the judges. A template's variables are `$name` placeholders (string.Template), so braces in JSON
examples need no escaping. `identify()` maps a system message back to its prompt: the offline
world's oracle uses it to know which role a request is for, exactly as a human reading the
prompt would.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache
from importlib import resources
from string import Template

_NAME_RE = re.compile(r"^(?P<name>[a-z0-9_]+)\.(?P<version>v\d+)\.txt$")


@dataclass(frozen=True)
class Prompt:
    name: str
    version: str
    text: str

    @property
    def id(self) -> str:
        """`name.version`: recorded with every trajectory (part of its id)."""
        return f"{self.name}.{self.version}"

    def render(self, **fields: object) -> str:
        """Fill `$placeholders`; a missing field is an error, not a silent blank."""
        return Template(self.text).substitute({k: str(v) for k, v in fields.items()})


@cache
def all_prompts() -> dict[tuple[str, str], Prompt]:
    found: dict[tuple[str, str], Prompt] = {}
    for entry in resources.files(__package__).iterdir():
        match = _NAME_RE.match(entry.name)
        if match:
            text = entry.read_text(encoding="utf-8").strip() + "\n"
            found[(match["name"], match["version"])] = Prompt(match["name"], match["version"], text)
    return found


def load_prompt(name: str, version: str | None = None) -> Prompt:
    """The named prompt at `version` (default: the highest version present)."""
    versions = sorted((v for (n, v) in all_prompts() if n == name), key=lambda v: int(v[1:]))
    if not versions:
        known = sorted({n for n, _ in all_prompts()})
        raise KeyError(f"no prompt named {name!r}; known prompts: {known}")
    chosen = version or versions[-1]
    if (name, chosen) not in all_prompts():
        raise KeyError(f"prompt {name!r} has no version {chosen!r}; available: {versions}")
    return all_prompts()[(name, chosen)]


def identify(system_text: str) -> Prompt | None:
    """The prompt a system message was rendered from (matched on its first line), if any."""
    first = system_text.strip().splitlines()[0] if system_text.strip() else ""
    for prompt in all_prompts().values():
        if prompt.text.strip().splitlines()[0] == first:
            return prompt
    return None
