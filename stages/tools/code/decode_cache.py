"""Decoded input images kept in the sandbox zygote, so a call's child skips PIL's decode.

Loaded by `sandbox_worker` (stdlib + PIL only; it runs inside the sandbox). R1V4-style code
re-opens the same large input on every call (`Image.open(p).crop(box)`: PIL decodes the whole
image to crop it), and the K rollouts of a task do it again and again. The zygote decodes each
large staged PNG/JPEG once, before forking a call's child, and keeps the decoded core in a
byte-bounded LRU keyed by the file's identity (st_dev, st_ino, st_size, st_mtime_ns; inputs are
hard links of the pool's copies, so the identity holds across calls). The child inherits the
cache through fork; when its code loads that file, PIL runs its normal load except that the
decoder is replayed: the pixels are the inherited core (copy-on-write: the child's in-place edits
never reach the zygote or a later call) and the decoder reads the same blocks and reports the
same end, so the file position, trailing chunks (PNG text after IDAT), info, palette, fp closing
and `load()`'s return value are PIL's own. Only the first image object a child loads from a file
gets the inherited core; a second open of the same file in the same child decodes normally, so
two opens never alias. Anything unexpected (another mode or size after `draft()`, another tile,
a file object that is not a plain file, an error) falls back to PIL's normal decode.

Security: teacher code is hostile and can read its own memory, which now holds the decoded
images of other calls of the same run that this worker served (inputs of other trajectories, at
most `decode_cache_mb`). No secrets live in the zygote; nothing else widens (no new mounts,
files, or channels back to the zygote). The zygote decodes only staged files: inputs, and images
earlier calls produced, which the host has already decoded itself (`code.py` reads each back).
"""

from __future__ import annotations

import contextlib
import io
import os
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

import PIL.Image
import PIL.ImageFile

#: Formats whose single-tile push decode is replayed (both decode to the full image in one tile).
FORMATS = ("PNG", "JPEG")
#: Identities remembered as "not cacheable" (small, other format, undecodable) before the oldest go.
_MAX_SKIPPED = 4096
#: The installed cache (code running in the sandbox can look at its counters, as the tests do).
active: DecodeCache | None = None
_BYTES_PER_PIXEL = {"1": 1, "L": 1, "P": 1, "I;16": 2, "I;16B": 2, "I;16L": 2, "I;16N": 2}


@dataclass
class Entry:
    """One decoded file: its core, the state PIL had when it decoded it, and how the decode went."""

    core: Any
    signature: tuple
    decoder: tuple  # (mode, decoder name, args, extra, extents) the decoder was made with
    calls: int  # decode() calls until the decoder said it was done
    final: tuple  # what the last decode() call returned
    nbytes: int


@dataclass
class _Recording:
    signature: tuple | None = None
    decoder: tuple | None = None
    calls: int = 0
    final: tuple | None = None
    pulls_fd: bool = False


@dataclass
class DecodeCache:
    """The zygote's decoded images; `prefill` before a fork, `serve` in the forked child."""

    max_bytes: int
    min_pixels: int
    entries: OrderedDict[tuple, Entry] = field(default_factory=OrderedDict)
    skipped: OrderedDict[tuple, None] = field(default_factory=OrderedDict)
    nbytes: int = 0
    decoded: int = 0  # files decoded by the zygote (each once while it stays cached)
    evicted: int = 0
    hits: int = 0  # (in a child) loads that took a cached core (each entry once)
    serving: bool = False
    _recording: _Recording | None = None
    _pending: dict[int, tuple[Any, Entry]] = field(default_factory=dict)

    # -- zygote side
    def prefill(self, paths: list[str]) -> int:
        """Decode the files among `paths` that are not cached yet; returns how many were decoded."""
        done = 0
        for path in paths:
            try:
                key = _identity(os.stat(path))
            except OSError:
                continue
            if key in self.entries:
                self.entries.move_to_end(key)
            elif key not in self.skipped:
                done += self._decode(path, key)
        return done

    def _decode(self, path: str, key: tuple) -> bool:
        entry = None
        try:
            with PIL.Image.open(path) as image:
                if _identity(os.fstat(image.fp.fileno())) == key and self._worth_it(image):
                    entry = self._record(image)
        except Exception:  # unreadable, a bomb, a decoder error: the child meets it itself
            entry = None
        if entry is None:
            self.skipped[key] = None
            while len(self.skipped) > _MAX_SKIPPED:
                self.skipped.popitem(last=False)
            return False
        self.entries[key] = entry
        self.nbytes += entry.nbytes
        self.decoded += 1
        while self.nbytes > self.max_bytes:
            _, old = self.entries.popitem(last=False)
            self.nbytes -= old.nbytes
            self.evicted += 1
        return True

    def _worth_it(self, image: PIL.Image.Image) -> bool:
        width, height = image.size
        return (
            image.format in FORMATS
            and len(image.tile) == 1
            and not getattr(image, "is_animated", False)
            and width * height >= self.min_pixels
            and _nbytes(image.mode, image.size) <= self.max_bytes
        )

    def _record(self, image: PIL.ImageFile.ImageFile) -> Entry | None:
        """Load `image` normally, noting the state and decoder calls the child must match."""
        self._recording = recording = _Recording()
        try:
            image.load()
        finally:
            self._recording = None
        done = recording.final is not None and recording.final[0] < 0  # the decoder ended itself
        if not done or recording.pulls_fd or recording.signature is None or recording.decoder is None:
            return None
        core = image.im
        return Entry(
            core=core,
            signature=recording.signature,
            decoder=recording.decoder,
            calls=recording.calls,
            final=recording.final,
            nbytes=_nbytes(core.mode, core.size),
        )

    # -- child side
    def serve(self) -> None:
        """In a forked child: loads of cached files may take their core from now on."""
        self.serving = True

    def _take(self, image: PIL.ImageFile.ImageFile) -> Entry | None:
        """The entry for this load, removed from the child's cache (one pop: atomic, so even two
        threads never share a core); None to decode normally."""
        if not self.entries or type(image.fp) not in (io.BufferedReader, io.FileIO):
            return None
        key = _identity(os.fstat(image.fp.fileno()))
        entry = self.entries.pop(key, None)
        if entry is not None and entry.signature != _signature(image):
            self.entries[key] = entry  # another mode or size (draft): a later plain open may take it
            return None
        self.hits += entry is not None
        return entry

    # -- the two PIL hooks
    def load_prepare(self, image: PIL.ImageFile.ImageFile, original) -> None:
        with contextlib.suppress(Exception):  # the cache never breaks a load: it decodes as usual
            self._prepare(image)
        original(image)

    def _prepare(self, image: PIL.ImageFile.ImageFile) -> None:
        if self._recording is not None:
            self._recording.signature = _signature(image)
        elif self.serving and _unloaded(image):
            entry = self._take(image)
            if entry is not None:
                image.im = entry.core
                self._pending[id(entry.core)] = (entry.core, entry)

    def wrap_decoder(self, decoder: Any, params: tuple) -> Any:
        if self._recording is None and not self._pending:
            return decoder
        return _Decoder(self, decoder, params)


class _Decoder:
    """Stands for PIL's decoder during a recorded decode (counts) or a replayed one (skips)."""

    def __init__(self, cache: DecodeCache, real: Any, params: tuple) -> None:
        self.cache = cache
        self.real = real
        self.params = params
        self.recording = cache._recording
        self.replay: Entry | None = None
        self.calls = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)

    @property
    def pulls_fd(self) -> bool:
        if self.recording is not None and self.real.pulls_fd:
            self.recording.pulls_fd = True
        return self.real.pulls_fd

    def setimage(self, im: Any, extents: Any = None) -> Any:
        pending = self.cache._pending.pop(id(im), None)
        if pending is not None and pending[0] is im:
            entry = pending[1]
            if entry.decoder == (*self.params, tuple(extents)) and not self.real.pulls_fd:
                self.replay = entry
                return None
        if self.recording is not None and extents is not None:
            self.recording.decoder = (*self.params, tuple(extents))
        return self.real.setimage(im, extents)

    def cleanup(self) -> None:
        if self.replay is None:  # a replayed decoder was never set up: nothing of it to free
            self.real.cleanup()

    def decode(self, data: bytes) -> tuple:
        self.calls += 1
        if self.replay is not None:  # read what the real decoder read, decode nothing
            return self.replay.final if self.calls >= self.replay.calls else (len(data), 0)
        result = self.real.decode(data)
        if self.recording is not None:
            self.recording.calls = self.calls
            self.recording.final = tuple(result)
        return result


def _unloaded(image: PIL.Image.Image) -> bool:
    """No pixels yet. Pillow 11+ keeps them in `_im` behind the `im` property; 10.x in `im`."""
    state = vars(image)
    return state.get("_im", state.get("im")) is None


def _identity(info: os.stat_result) -> tuple:
    return (info.st_dev, info.st_ino, info.st_size, info.st_mtime_ns)


def _signature(image: PIL.ImageFile.ImageFile) -> tuple:
    """What PIL's decode depends on besides the file: equal, and the decode is the same."""
    return (
        type(image),
        image.format,
        image.mode,
        image.size,
        tuple(tuple(tile) for tile in image.tile),
        image.decoderconfig,
        image.decodermaxblock,
        getattr(image, "tile_prefix", b""),
    )


def _nbytes(mode: str, size: tuple[int, int]) -> int:
    return size[0] * size[1] * _BYTES_PER_PIXEL.get(mode, 4)


def install(max_bytes: int, min_pixels: int) -> DecodeCache:
    """Hook PIL's load (two module attributes) to consult a new cache; returns the cache."""
    global active
    cache = active = DecodeCache(max_bytes=max_bytes, min_pixels=min_pixels)
    prepare = PIL.ImageFile.ImageFile.load_prepare
    getdecoder = PIL.Image._getdecoder

    def load_prepare(self: PIL.ImageFile.ImageFile) -> None:
        cache.load_prepare(self, prepare)

    def _getdecoder(mode: str, decoder_name: str, args: Any, extra: tuple = ()) -> Any:
        return cache.wrap_decoder(
            getdecoder(mode, decoder_name, args, extra), (mode, decoder_name, args, extra)
        )

    load_prepare.__wrapped__ = prepare  # type: ignore[attr-defined]
    _getdecoder.__wrapped__ = getdecoder  # type: ignore[attr-defined]
    PIL.ImageFile.ImageFile.load_prepare = load_prepare  # type: ignore[method-assign]
    PIL.Image._getdecoder = _getdecoder
    return cache


def uninstall() -> None:
    """Undo `install` (tests run it in-process)."""
    global active
    active = None
    for owner, name in ((PIL.ImageFile.ImageFile, "load_prepare"), (PIL.Image, "_getdecoder")):
        hook = getattr(owner, name)
        if hasattr(hook, "__wrapped__"):
            setattr(owner, name, hook.__wrapped__)
