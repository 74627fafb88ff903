"""Nothing of the host in the data: find host-specific strings in text that leaves a run.

A dataset is published, exported and trained on far from the machine that made it; a file path
of that machine teaches a student to expect local paths where the web gives URLs, and a secret in
a thought or observation is a leaked key. The guard builds its needles once per run:

- paths: the run folder, the checkout, the working directory, the home directory, every path the
  config names (`world.dir`, `tools.search.corpus_dir`, ...) as given and resolved, and this
  process's temporary folder (`tempfile.gettempdir()`). A folder every machine has (`/tmp`,
  `/root`, `/home/ubuntu`) is no needle itself, since any system's paths live there: under it,
  only the entries that exist on this machine when the guard is built are (`/tmp/pytest-of-me/`,
  `/tmp/i19world/`), never sandbox-style names (`/tmp/in`, `/tmp/out`). So `/tmp/in/image_0.png`
  in another system's sandbox code is data, not a leak; paths the sandbox shows the model
  (`/input`, `/output`) are never needles;
- the user name, as a whole word, unless it is a generic account name (`root`, `ubuntu`, ...)
  that names no one and would match ordinary prose;
- secrets: the value of every environment variable the config names through a field ending in
  `_env` (found by walking the config model), reported by the variable's name, never its value.

`LeakGuard.scan(text)` returns what matched; `scan_row` walks a record's string fields. A secret
shorter than MIN_SECRET_CHARS is not scanned (it would match ordinary text): `secrets_too_short`
names its variable so the caller can say so. One
owner: publish, the exports, SFT formatting and the filter's `leak` check all call this.
"""

from __future__ import annotations

import getpass
import os
import re
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from pydantic import BaseModel

CHECKOUT = Path(__file__).resolve().parent.parent
#: Paths that exist inside the code sandbox or on every machine: never host-specific needles.
GENERIC_PATHS = frozenset({"/", "/tmp", "/var/tmp", "/input", "/output", "/usr", "/home", "/var", "/opt"})
#: Account names that identify no one (and are ordinary words): not matched as the user name.
GENERIC_USERS = frozenset(
    {"root", "user", "admin", "ubuntu", "debian", "runner", "app", "jovyan", "nobody", "ec2-user", "vscode"}
)
MIN_SECRET_CHARS = 8  # shorter values would match ordinary text; `secrets_too_short` names them
MIN_USER_CHARS = 3
#: Folders every machine has, so any system's paths live in them: no needle themselves; only
#: the entries that exist under them on this machine are.
SHARED_FOLDERS = frozenset({"/tmp", "/var/tmp", "/root", "/private/tmp", "/dev/shm"})
#: Entry names that code sandboxes use for their own files (`/tmp/in/image_0.png`,
#: `/tmp/out/crop.png`): never needles, even where this machine happens to have one.
SANDBOX_NAMES = frozenset(
    {"in", "out", "input", "output", "inputs", "outputs", "images", "image", "work", "sandbox", "code"}
)
MAX_ENTRIES = 5000  # entries of a shared folder turned into needles: the newest (this run's own) first
#: A path needle starts a path: not inside a word or a URL's host or path (`http://x.org/root`).
PATH_START = r"(?<![\w.-])"
PATH_END = r"(?![\w-])"


@dataclass(frozen=True)
class Needle:
    """One host-specific string. `label` is what a report prints: a secret's is its variable."""

    pattern: str  # a regular expression
    label: str
    kind: str  # "path" | "user" | "secret"
    literal: str = ""  # text every match contains ("": none known, the regex always runs)
    fallback: bool = False  # tried after every other needle (a shared folder's entries)

    @property
    def secret(self) -> bool:
        return self.kind == "secret"


@dataclass(frozen=True)
class Match:
    """A needle found in one field of one row; `excerpt` has every needle replaced by its label."""

    row: str
    field: str
    label: str
    kind: str
    excerpt: str
    found: str = ""  # the matched text for paths and user names (for the console); "" for secrets
    occurrences: int = 1

    @property
    def secret(self) -> bool:
        return self.kind == "secret"

    def describe(self, *, show: bool = False) -> str:
        """`row R, field F: secret $VAR (key) in '...<$VAR (key)>...'`; `show` adds a path's text."""
        what = f"secret {self.label}" if self.secret else f"{self.kind} {self.label}"
        if show and self.found:
            what += f" {self.found!r}"
        times = f" ({self.occurrences} times)" if self.occurrences > 1 else ""
        return f"row {self.row}, field {self.field}: {what}{times} in {self.excerpt!r}"


@dataclass
class ScanCounts:
    """What a scan looked at (for summaries: a guard that scanned nothing proves nothing)."""

    rows: int = 0
    fields: int = 0
    chars: int = 0
    matches: int = 0  # (row, field, needle) triples
    occurrences: int = 0  # every place a needle occurs

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


@dataclass
class LeakGuard:
    """Scans text for the host's needles with one compiled alternation."""

    needles: list[Needle]
    secrets_too_short: list[str] = field(default_factory=list)  # variables whose values are not scanned
    counts: ScanCounts = field(default_factory=ScanCounts)

    def __post_init__(self) -> None:
        unique = {n.pattern: n for n in self.needles}
        # longest first, so a path wins over a shorter path it starts with; a shared folder's
        # entries last, so the run folder inside /tmp is named as the run folder
        self.needles = sorted(unique.values(), key=lambda n: (n.fallback, -len(n.pattern), n.pattern))
        # secrets get their own pass: a path match must never swallow a key inside it
        self._passes = [
            (group, re.compile("|".join(f"(?P<n{i}>{n.pattern})" for i, n in enumerate(group))))
            for group in ([n for n in self.needles if n.secret], [n for n in self.needles if not n.secret])
            if group
        ]
        # a pass runs only on text holding one of its literals (substring search is far cheaper
        # than the alternation, and most text holds none): same matches, a fraction of the time
        self._literals = [
            tuple(dict.fromkeys(n.literal for n in group)) if all(n.literal for n in group) else ()
            for group, _ in self._passes
        ]

    # ------------------------------------------------------------------------------ scanning

    def find(self, text: str) -> list[tuple[Needle, int, int]]:
        """Every (needle, start, end) in `text`: secrets first, then paths and the user name."""
        found = []
        for (group, regex), literals in zip(self._passes, self._literals, strict=True) if text else ():
            if literals and not any(literal in text for literal in literals):
                continue  # no match can lack its needle's literal
            for hit in regex.finditer(text):
                found.append((group[int(hit.lastgroup[1:])], hit.start(), hit.end()))  # type: ignore[index]
        return found

    def redact(self, text: str, *, secrets_only: bool = False) -> str:
        """`text` with every needle (or every secret) replaced by `<label>` (safe to print or log)."""
        for group, regex in self._passes[:1] if secrets_only else self._passes:
            if secrets_only and not group[0].secret:
                break
            text = regex.sub(lambda m, g=group: f"<{g[int(m.lastgroup[1:])].label}>", text)  # type: ignore[index]
        return text

    def scan(self, text: str, *, row: str = "", field_name: str = "text") -> list[Match]:
        """One Match per needle per field (the first occurrence), with a redacted excerpt."""
        self.counts.fields += 1
        self.counts.chars += len(text)
        first: dict[str, Match] = {}
        for needle, start, end in self.find(text):
            self.counts.occurrences += 1
            if needle.pattern in first:
                match = first[needle.pattern]
                first[needle.pattern] = replace(match, occurrences=match.occurrences + 1)
                continue
            excerpt = self.redact(text[max(0, start - 40) : end + 40]).replace("\n", " ")
            found = "" if needle.secret else self.redact(text[start:end], secrets_only=True)
            first[needle.pattern] = Match(row, field_name, needle.label, needle.kind, excerpt, found)
        self.counts.matches += len(first)
        return list(first.values())

    def scan_many(self, fields: Sequence[tuple[str, str]], *, row: str = "") -> list[list[Match]]:
        """`scan` of each (field name, text) of one row, in order. One substring search over all
        of them first: a row holding no needle's literal runs no regex (counted as scanned)."""
        joined = "\0".join(text for _, text in fields)  # no literal holds a NUL
        if any(not literals or any(lit in joined for lit in literals) for literals in self._literals):
            return [self.scan(text, row=row, field_name=name) for name, text in fields]
        self.counts.fields += len(fields)
        self.counts.chars += sum(len(text) for _, text in fields)
        return [[] for _ in fields]

    def scan_image(self, row: str, data: bytes, name: str = "image") -> list[Match]:
        """The text an image carries (PNG tEXt/zTXt/iTXt chunks, comments): sandbox code can
        write what it read of the host there, and it would be published byte for byte."""
        matches: list[Match] = []
        for key, text in image_text_fields(data):
            matches.extend(self.scan(text, row=row, field_name=f"{name}[{key}]"))
        return matches

    def scan_row(self, row: str, record: Any) -> list[Match]:
        """Every string inside `record` (dicts, lists, nested), named like `messages[3].content`."""
        self.counts.rows += 1
        matches: list[Match] = []
        for name, text in text_fields(record):
            matches.extend(self.scan(text, row=row, field_name=name))
        return matches

    # ------------------------------------------------------------------------------ building

    @classmethod
    def for_run(cls, run_dir: str | Path | None, config: BaseModel | None = None) -> LeakGuard:
        """The needles of a run: its folder, this checkout, the host, the config's paths and secrets.

        Without `config`, the run's saved `config.yaml` is read (defaults when it has none).
        """
        if config is None:
            config = _saved_config(Path(run_dir) if run_dir else None)
        needles: list[Needle] = []
        paths: dict[str, str] = {}
        if run_dir is not None:
            _add_path(paths, Path(run_dir), "run folder")
        _add_path(paths, CHECKOUT, "checkout")
        _add_path(paths, Path.cwd(), "working directory")
        home = _home()
        if home is not None:
            _add_path(paths, home, "home directory")
        for name, value in config_paths(config):
            _add_path(paths, Path(value), f"config {name}")
        shared = {p for p in paths if _is_shared(p)}
        for folder in shared:  # a generic home (/root, /home/ubuntu): its existing entries only
            needles.extend(_entries_needle(folder, paths.pop(folder)))
        temp = tempfile.gettempdir()
        for form in dict.fromkeys((os.path.normpath(temp), os.path.realpath(temp))):
            if _is_shared(form):
                needles.extend(_entries_needle(form, "temporary folder"))
            elif form not in GENERIC_PATHS:
                needles.append(
                    Needle(PATH_START + re.escape(form) + PATH_END, "temporary folder", "path", literal=form)
                )
        needles += [
            Needle(PATH_START + re.escape(p) + PATH_END, label, "path", literal=p)
            for p, label in paths.items()
        ]
        user = _user()
        if user and user not in GENERIC_USERS and len(user) >= MIN_USER_CHARS:
            needles.append(
                Needle(rf"(?<![\w-]){re.escape(user)}(?![\w-])", "user name", "user", literal=user)
            )
        short: list[str] = []
        for name, var in secret_vars(config):
            value = os.environ.get(var)
            if not value:
                continue
            if len(value.strip()) < MIN_SECRET_CHARS:
                short.append(var)
                continue
            needles.append(
                Needle(re.escape(value.strip()), f"${var} ({name})", "secret", literal=value.strip())
            )
        return cls(needles, secrets_too_short=sorted(set(short)))


def image_text_fields(data: bytes) -> list[tuple[str, str]]:
    """(key, text) of the text an image file carries; [] for an unreadable one (PIL caps each
    PNG text chunk at 1 MB and all of them at 64 MB)."""
    import io

    from PIL import Image

    try:
        with Image.open(io.BytesIO(data)) as image:
            found = dict(getattr(image, "text", {}) or {})
            found.update(
                {k: v for k, v in image.info.items() if k not in found and isinstance(v, str | bytes)}
            )
    except Exception:  # a broken image carries nothing readable; its decode fails elsewhere
        return []
    return [(str(k), v.decode("utf-8", "replace") if isinstance(v, bytes) else v) for k, v in found.items()]


def text_fields(record: Any, prefix: str = "") -> Iterator[tuple[str, str]]:
    """(dotted name, text) for every string in nested dicts/lists; bytes (images) are skipped."""
    if isinstance(record, str):
        yield prefix or "text", record
    elif isinstance(record, dict):
        for key, value in record.items():
            yield from text_fields(value, f"{prefix}.{key}" if prefix else str(key))
    elif isinstance(record, (list, tuple)):
        for index, value in enumerate(record):
            yield from text_fields(value, f"{prefix}[{index}]")


def _walk(model: BaseModel, prefix: str = "") -> Iterator[tuple[str, Any]]:
    for name in type(model).model_fields:
        value = getattr(model, name)
        dotted = f"{prefix}{name}"
        if isinstance(value, BaseModel):
            yield from _walk(value, dotted + ".")
        else:
            yield dotted, value


def secret_vars(config: BaseModel) -> Iterable[tuple[str, str]]:
    """(config key, environment variable) for every `*_env` field that names one."""
    return [(k, v) for k, v in _walk(config) if k.endswith("_env") and isinstance(v, str) and v]


_PATH_KEYS = re.compile(r"(?:^|\.|_)(?:dir|root|path|config)$")


def config_paths(config: BaseModel) -> Iterable[tuple[str, str]]:
    """(config key, value) for every folder or file the config names (`*dir`, `*root`, `*path`)."""
    return [(k, v) for k, v in _walk(config) if _PATH_KEYS.search(k) and isinstance(v, str) and v.strip()]


def _add_path(paths: dict[str, str], path: Path, label: str) -> None:
    for form in {str(path.absolute()), os.path.realpath(path)}:
        form = os.path.normpath(form)
        if form not in GENERIC_PATHS and form not in paths:
            paths[form] = label


def _is_shared(path: str) -> bool:
    """A folder every machine has (`/tmp`, `/root`) or a generic account's home (`/home/ubuntu`)."""
    parent, name = os.path.split(path)
    return path in SHARED_FOLDERS or (parent == "/home" and name in GENERIC_USERS)


def _entries_needle(folder: str, label: str) -> list[Needle]:
    """One needle for the entries that exist under a shared folder now (`/tmp/pytest-of-me`)."""
    try:
        with os.scandir(folder) as it:
            entries = [e for e in it if e.name not in SANDBOX_NAMES]
        if len(entries) > MAX_ENTRIES:  # a huge shared /tmp: the newest entries (this run's among them)
            entries = sorted(entries, key=_mtime, reverse=True)[:MAX_ENTRIES]
        names = [e.name for e in entries]
    except OSError:
        return []
    if not names:
        return []
    prefix = folder.rstrip("/") + "/"
    alternation = "|".join(re.escape(n) for n in sorted(names, key=len, reverse=True))
    pattern = PATH_START + re.escape(prefix) + f"(?:{alternation})" + PATH_END
    return [Needle(pattern, label, "path", literal=prefix, fallback=True)]


def _mtime(entry: os.DirEntry[str]) -> float:
    try:
        return entry.stat(follow_symlinks=False).st_mtime
    except OSError:
        return 0.0


def _home() -> Path | None:
    try:
        return Path.home()
    except (KeyError, RuntimeError):  # no HOME and no passwd entry
        return None


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no passwd entry in some containers
        return ""


def _saved_config(run_dir: Path | None) -> BaseModel:
    from pipeline.config import Config, ConfigError, load_config

    saved = run_dir / "config.yaml" if run_dir else None
    if saved is not None and saved.exists():
        try:
            return load_config(saved)
        except ConfigError:  # written by another trajforge version: its defaults still name the secrets
            pass
    return Config()


def summarise(matches: list[Match], limit: int = 20) -> list[str]:
    """Console lines: each match (a path with its text, a secret by its variable), then how many more."""
    lines = [m.describe(show=True) for m in matches[:limit]]
    if len(matches) > limit:
        lines.append(f"... and {len(matches) - limit} more")
    return lines
