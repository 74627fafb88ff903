"""Prompt templates: the versioned files shipped here, or files a user names in the config.

One owner for every prompt trajforge sends: executors (DeepResearch, General), the planner, and
the judges. Shipped templates are `prompts/<name>.<version>.txt` (`v1`, `v2`, ...). A user swaps
any of them with `prompts.<name>: PATH` in the config (for example to the R1V4 report's own
system prompts); such a prompt's version is a hash of its content (`h<12 hex>`), so its id in
`prompt_version` changes exactly when its text does. A run saves the prompts it used under
`RUN/prompts/`, so later commands (exports, SFT) find the same text without the config.

A template's variables are `$name` placeholders (string.Template), so braces in JSON examples
need no escaping. The executor and planner templates hold `$tools` / `$plan_tools`, filled from
the tools' own declarations (`with_tools`): with the tools a template was shipped for, the
rendered prompt keeps the template's version; with any other tool set its version is a hash of
the rendered text, so a trajectory id changes exactly when the prompt the teacher saw does.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path
from string import Template

_NAME_RE = re.compile(r"^(?P<name>[a-z0-9_]+)\.(?P<version>v\d+|h[0-9a-f]{12})\.txt$")
_overrides: dict[str, Prompt] = {}  # name -> the user's prompt (process-wide, set from the config)
_extra: dict[tuple[str, str], Prompt] = {}  # prompts saved by runs (found by their hash version)
_rendered: dict[tuple[str, str], Prompt] = {}  # templates filled with another tool set this process


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


def content_version(text: str) -> str:
    """The version of a user's prompt: a hash of its text."""
    return "h" + hashlib.sha256(text.encode("utf-8")).hexdigest()[:12]


@cache
def shipped() -> dict[tuple[str, str], Prompt]:
    found: dict[tuple[str, str], Prompt] = {}
    for entry in resources.files(__package__).iterdir():
        match = _NAME_RE.match(entry.name)
        if match:
            text = entry.read_text(encoding="utf-8").strip() + "\n"
            found[(match["name"], match["version"])] = Prompt(match["name"], match["version"], text)
    return found


def all_prompts() -> dict[tuple[str, str], Prompt]:
    """Every prompt known to this process: shipped, saved by runs, and the user's."""
    found = {**shipped(), **_extra, **_rendered}
    found.update({(p.name, p.version): p for p in _overrides.values()})
    return found


def names() -> list[str]:
    return sorted({name for name, _ in shipped()})


def use_files(files: dict[str, str]) -> list[Prompt]:
    """Swap shipped prompts for the user's files (`prompts.<name>: PATH` in the config)."""
    chosen = []
    for name, path in files.items():
        if name not in names():
            raise KeyError(f"prompts.{name}: no prompt named {name!r}; known prompts: {names()}")
        file = Path(path).expanduser()
        if not file.is_file():
            raise FileNotFoundError(f"prompts.{name}: file {file} not found; point it at a text file")
        chosen.append(file.read_text(encoding="utf-8"))
    return use_texts(dict(zip(files, chosen, strict=True)))


def use_texts(texts: dict[str, str]) -> list[Prompt]:
    """Swap shipped prompts for the user's texts: what `use_files` read, handed to a process on
    another machine that has no copy of the files (a Ray worker on another node)."""
    chosen = []
    for name, raw in texts.items():
        text = raw.strip() + "\n"
        chosen.append(Prompt(name, content_version(text), text))
    _overrides.clear()
    _overrides.update({p.name: p for p in chosen})
    return chosen


def override_texts() -> dict[str, str]:
    """The user's prompt texts in use in this process (name -> text)."""
    return {name: prompt.text for name, prompt in _overrides.items()}


def with_tools(template: Prompt, fields: dict[str, str], shipped_fields: dict[str, str]) -> Prompt:
    """`template` with its tool placeholders filled. `shipped_fields` are the same placeholders
    filled with the built-in tools: equal fields keep the template's version, other fields make
    a new prompt versioned by its text (remembered, and saved into the run by `save_used`)."""
    wanted = {key: value for key, value in fields.items() if f"${key}" in template.text}
    if not wanted:
        return template  # a user's own prompt, or a template that lists no tools
    text = Template(template.text).safe_substitute(wanted)
    if all(shipped_fields.get(key) == value for key, value in wanted.items()):
        return Prompt(template.name, template.version, text)
    prompt = Prompt(template.name, content_version(text), text)
    _rendered[(prompt.name, prompt.version)] = prompt
    return prompt


def save_used(folder: Path) -> None:
    """Write the user's prompts, and prompts filled with other tools, into a run
    (`RUN/prompts/<name>.<version>.txt`), so later commands read the text the teacher saw."""
    for prompt in [*_overrides.values(), *_rendered.values()]:
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{prompt.id}.txt"
        if not path.exists():
            path.write_text(prompt.text, encoding="utf-8")


def add_dir(folder: Path) -> None:
    """Make prompts a run saved findable by their versions."""
    if not folder.is_dir():
        return
    for path in folder.iterdir():
        match = _NAME_RE.match(path.name)
        if match:
            text = path.read_text(encoding="utf-8").strip() + "\n"
            _extra[(match["name"], match["version"])] = Prompt(match["name"], match["version"], text)


def load_prompt(name: str, version: str | None = None) -> Prompt:
    """The named prompt at `version` (default: the user's file if set, else the highest shipped)."""
    if version is None and name in _overrides:
        return _overrides[name]
    known = all_prompts()
    versions = sorted((v for (n, v) in shipped() if n == name), key=lambda v: int(v[1:]))
    if not versions and name not in _overrides:
        raise KeyError(f"no prompt named {name!r}; known prompts: {names()}")
    chosen = version or versions[-1]
    if (name, chosen) not in known:
        raise KeyError(f"prompt {name!r} has no version {chosen!r}; available: {versions}")
    return known[(name, chosen)]
