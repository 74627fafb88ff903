"""Encyclopedia readers behind one interface (`Corpus`): the offline world (default), a folder of
HTML pages, a Kiwix ZIM file (libzim) and a MediaWiki XML dump (mwxml + mwparserfromhell)."""

from __future__ import annotations

from pathlib import Path

from stages.readers.corpus.base import Corpus, Page

KINDS = ("auto", "world", "html", "zim", "xml")


def open_corpus(source: str | Path, kind: str = "auto", origin: str | None = None) -> Corpus:
    """The reader for `source`; `kind` auto: .zim, .xml/.xml.bz2, a built world, else a folder of HTML.
    `origin`: serve it as a local web at that address (not for a world, which has its own server)."""
    path = Path(source)
    if kind not in KINDS:
        raise ValueError(f"corpus kind {kind!r}: use one of {list(KINDS)}")
    if not path.exists():
        raise FileNotFoundError(f"corpus {path} does not exist; give a .zim file, an XML dump or a folder")
    kind = resolve_kind(path, kind)
    if kind == "zim":
        from stages.readers.corpus.zim import ZimCorpus

        return ZimCorpus(path, origin=origin)
    if kind == "xml":
        from stages.readers.corpus.mediawiki import XmlDumpCorpus

        return XmlDumpCorpus(path, origin=origin)
    from stages.readers.corpus.html_folder import HtmlFolder, WorldCorpus

    return WorldCorpus(path) if kind == "world" else HtmlFolder(path, origin=origin)


def resolve_kind(path: Path, kind: str) -> str:
    """What `auto` means for `path`: zim, xml, world or html."""
    name = path.name.lower()
    if kind == "auto":
        if name.endswith(".zim"):
            kind = "zim"
        elif name.endswith((".xml", ".xml.bz2", ".xml.gz", ".xml.7z")):
            kind = "xml"
        elif (path / "world.json").is_file():
            kind = "world"
        else:
            kind = "html"
    return kind


__all__ = ["KINDS", "Corpus", "Page", "open_corpus"]
