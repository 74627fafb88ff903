"""The corpus readers on tiny files the tests write: a folder of HTML, a ZIM (libzim's writer),
a MediaWiki XML export. Each must give titles, text, links by mention and images."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from PIL import Image

from stages.readers.corpus import open_corpus


def _png(colour: str = "red", size: int = 96) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (size, size), colour).save(buffer, format="PNG")
    return buffer.getvalue()


PAGES = {
    "Alpha": '<p>Alpha is a town founded in 1402. It is twinned with <a href="Beta">Beta</a>.</p>'
    '<p>The mayor of <a href="Beta">Beta</a> visits <a href="Gamma">Gamma</a>.</p><img src="alpha.png">',
    "Beta": '<p>Beta is a harbour with 12 piers, near <a href="Alpha">Alpha</a>.</p>',
    "Gamma": "<p>Gamma is a river.</p>",
}


def _html(title: str, body: str) -> str:
    return f"<html><head><title>{title}</title></head><body><h1>{title}</h1>{body}</body></html>"


def _check(corpus, image_ref_ok: bool = True) -> None:
    assert sorted(corpus.titles()) == ["Alpha", "Beta", "Gamma"]
    alpha = corpus.page("Alpha")
    assert alpha is not None and alpha.title == "Alpha"
    assert "founded in 1402" in alpha.lead()
    assert alpha.mention_counts() == {"Beta": 2, "Gamma": 1}
    assert corpus.inlinks() == {"Beta": 1, "Gamma": 1, "Alpha": 1}
    assert corpus.page("Nowhere") is None
    if image_ref_ok:
        assert alpha.images and corpus.image_bytes(alpha.images[0]) == _png()


def test_html_folder(tmp_path: Path) -> None:
    for title, body in PAGES.items():
        (tmp_path / f"{title}.html").write_text(_html(title, body.replace('href="Beta"', 'href="Beta.html"')
                                                     .replace('href="Gamma"', 'href="Gamma.html"')
                                                     .replace('href="Alpha"', 'href="Alpha.html"')))  # fmt: skip
    (tmp_path / "alpha.png").write_bytes(_png())
    corpus = open_corpus(tmp_path)
    _check(corpus)
    assert corpus.page("Beta").url.endswith("Beta.html")


def test_zim_file_written_by_libzim(tmp_path: Path) -> None:
    from libzim.writer import Creator, Hint, Item, StringProvider

    class _Item(Item):
        def __init__(self, path: str, title: str, mime: str, content: str | bytes) -> None:
            super().__init__()
            self.path, self.title, self.mime, self.content = path, title, mime, content

        def get_path(self) -> str:
            return self.path

        def get_title(self) -> str:
            return self.title

        def get_mimetype(self) -> str:
            return self.mime

        def get_contentprovider(self) -> StringProvider:
            return StringProvider(self.content)

        def get_hints(self) -> dict:
            return {Hint.FRONT_ARTICLE: self.mime == "text/html"}

    path = tmp_path / "tiny_wiki.zim"
    with Creator(str(path)).config_indexing(False, "eng") as creator:
        creator.set_mainpath("Alpha")
        for title, body in PAGES.items():
            creator.add_item(_Item(title, title, "text/html", _html(title, body)))
        creator.add_item(_Item("alpha.png", "", "image/png", _png()))
        creator.add_metadata("Source", "tiny.example.org")
    corpus = open_corpus(path)
    _check(corpus)
    assert corpus.page("Alpha").url == "https://tiny.example.org/wiki/Alpha"


DUMP = """<mediawiki xmlns="http://www.mediawiki.org/xml/export-0.10/" version="0.10" xml:lang="en">
  <siteinfo><sitename>Tiny</sitename><dbname>tinywiki</dbname>
    <base>https://tiny.example.org/wiki/Main_Page</base><generator>MediaWiki 1.41</generator>
    <case>first-letter</case>
    <namespaces><namespace key="0" case="first-letter" /><namespace key="6" case="first-letter">File</namespace></namespaces>
  </siteinfo>
{pages}
</mediawiki>
"""
_PAGE = """  <page><title>{title}</title><ns>{ns}</ns><id>{id}</id>{redirect}
    <revision><id>{id}0</id><timestamp>2024-01-01T00:00:00Z</timestamp><contributor><username>x</username><id>1</id></contributor>
      <model>wikitext</model><format>text/x-wiki</format><text xml:space="preserve">{text}</text><sha1>x</sha1></revision></page>"""


def test_mediawiki_xml_dump(tmp_path: Path) -> None:
    wikitext = {
        "Alpha": "[[File:Alpha.png|thumb|The town]] '''Alpha''' is a town founded in 1402. It is twinned "
        "with [[Beta]].\n\nThe mayor of [[Beta (harbour)|the harbour]] visits [[gamma]]. [[Category:Towns]]",
        "Beta": "'''Beta''' is a harbour with 12 piers, near [[Alpha]].",
        "Gamma": "'''Gamma''' is a river.",
    }
    pages = [
        _PAGE.format(title=t, ns=0, id=i + 1, redirect="", text=x)
        for i, (t, x) in enumerate(wikitext.items())
    ]
    pages.append(_PAGE.format(title="Beta (harbour)", ns=0, id=9, redirect='<redirect title="Beta" />',
                              text="#REDIRECT [[Beta]]"))  # fmt: skip
    path = tmp_path / "tinywiki-pages-articles.xml"
    path.write_text(DUMP.replace("{pages}", "\n".join(pages)), encoding="utf-8")
    images = tmp_path / "images"
    images.mkdir()
    (images / "Alpha.png").write_bytes(_png())
    from stages.readers.corpus.mediawiki import XmlDumpCorpus

    corpus = XmlDumpCorpus(path, images_dir=images, cache_dir=tmp_path)
    _check(corpus)
    alpha = corpus.page("Alpha")
    assert "[[" not in alpha.text and "Category" not in alpha.text
    assert alpha.url == "https://tiny.example.org/wiki/Alpha"
    assert corpus.page("Beta (harbour)").title == "Beta"  # redirects followed


def test_unreadable_corpus_says_what_to_do(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="does not exist"):
        open_corpus(tmp_path / "missing.zim")
    bad = tmp_path / "bad.zim"
    bad.write_bytes(b"not a zim")
    with pytest.raises(ValueError, match="not a readable ZIM"):
        open_corpus(bad)
