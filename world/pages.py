"""Encyclopedia pages: one HTML page per entity (infobox, prose, internal links) and its text.

Every fact in the infobox is also stated in the prose, because page visitors extract the main
text (trafilatura drops tables). `page_text` is exactly what the local text-search index holds.
The infobox shows each linked entry's URL next to its name: text extraction drops anchors, and a
reader (the multi-hop gold paths) follows a link by visiting the URL it read on the page.
"""

from __future__ import annotations

import html
import random

from world.kg import Entity

HOST = "world.trajforge.local"
BASE_URL = f"http://{HOST}"


def page_url(slug: str) -> str:
    return f"{BASE_URL}/wiki/{slug}"


def image_url(rel_path: str) -> str:
    """URL of a corpus image given its path relative to WORLD/corpus (`images/<slug>.png`)."""
    return f"{BASE_URL}/{rel_path}"


def _lead(e: Entity, kg: dict[str, Entity]) -> list[str]:
    """Sentences stating every attribute and link of `e`; names of linked entities in [[...]]."""
    a, ln = e.attributes, {r: f"[[{s}]]" for r, s in e.links.items()}
    if e.type == "person":
        return [
            f"{e.name} (born {a['born']}) is a {a['occupation']} born in {ln['birthplace']}.",
            f"{e.name} worked for {ln['employer']}, where most of their surviving work was produced.",
        ]
    if e.type == "organisation":
        return [
            f"{e.name} is a {a['industry']} founded in {a['founded']} by {ln['founder']}.",
            f"It is headquartered in {ln['headquarters']} and employs {a['employees']} people.",
        ]
    if e.type == "place":
        return [
            f"{e.name} is a {a['kind']} founded in {a['founded']}, with a population of {a['population']}.",
            f"{e.name} is twinned with {ln['twin_town']}.",
        ]
    if e.type == "species":
        return [
            f"The {e.name} is a {a['kind']} first described in {a['described']} by {ln['described_by']}.",
            f"It is found around {ln['habitat']} and reaches a length of {a['length_mm']} mm.",
        ]
    return [
        f"{e.name} is a {a['medium']} completed in {a['year']} by {ln['creator']}.",
        f"The work, {a['height_cm']} cm tall, is held by {ln['held_by']}.",
    ]


_FILLER = [
    "Local records describe {name} in several surviving ledgers.",
    "Accounts of {name} vary between the older and the newer archives.",
    "{name} appears in a number of regional guidebooks.",
    "Historians of the region often mention {name} in passing.",
]


def _backlinks(e: Entity, reverse: dict[str, list[tuple[str, str]]]) -> list[str]:
    sources = sorted(reverse.get(e.slug, []))[:6]
    return [f"[[{s}]]" for s, _ in sources]


def reverse_links(kg: dict[str, Entity]) -> dict[str, list[tuple[str, str]]]:
    reverse: dict[str, list[tuple[str, str]]] = {}
    for entity in kg.values():
        for relation, target in entity.links.items():
            reverse.setdefault(target, []).append((entity.slug, relation))
    return reverse


def paragraphs(e: Entity, kg: dict[str, Entity], reverse: dict[str, list[tuple[str, str]]]) -> list[str]:
    """The page's paragraphs with `[[slug]]` link markers (rendered as anchors or plain names)."""
    rng = random.Random(f"page-{e.slug}")
    paras = [" ".join(_lead(e, kg)), rng.choice(_FILLER).format(name=e.name)]
    related = _backlinks(e, reverse)
    if related:
        paras.append("See also: " + ", ".join(related) + ".")
    return paras


def _plain(text: str, kg: dict[str, Entity]) -> str:
    for slug in _link_slugs(text):
        text = text.replace(f"[[{slug}]]", kg[slug].name)
    return text


def _link_slugs(text: str) -> list[str]:
    out, start = [], text.find("[[")
    while start >= 0:
        end = text.find("]]", start)
        out.append(text[start + 2 : end])
        start = text.find("[[", end)
    return out


def _anchored(text: str, kg: dict[str, Entity]) -> str:
    escaped = html.escape(text)
    for slug in _link_slugs(text):
        anchor = f'<a href="{page_url(slug)}" title="{html.escape(kg[slug].name)}">{html.escape(kg[slug].name)}</a>'
        escaped = escaped.replace(f"[[{html.escape(slug)}]]", anchor)
    return escaped


def page_text(e: Entity, kg: dict[str, Entity], reverse: dict[str, list[tuple[str, str]]]) -> str:
    """Plain text of a page (title, then prose): what the text-search index holds."""
    return "\n\n".join([e.name, *(_plain(p, kg) for p in paragraphs(e, kg, reverse))])


def render_html(
    e: Entity, kg: dict[str, Entity], reverse: dict[str, list[tuple[str, str]]], image_rel: str
) -> str:
    """A Wikipedia-like page: title, infobox (image, attributes, links), paragraphs."""
    rows = [f"<tr><th>Type</th><td>{e.type}</td></tr>"]
    rows += [
        f"<tr><th>{k.replace('_', ' ').capitalize()}</th><td>{html.escape(v)}</td></tr>"
        for k, v in e.attributes.items()
    ]
    rows += [
        f"<tr><th>{r.replace('_', ' ').capitalize()}</th><td>{_anchored(f'[[{s}]]', kg)} ({page_url(s)})</td></tr>"
        for r, s in e.links.items()
    ]
    body = "\n".join(f"<p>{_anchored(p, kg)}</p>" for p in paragraphs(e, kg, reverse))
    title = html.escape(e.name)
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{title} - World Encyclopedia</title></head>\n<body>\n"
        f'<nav><a href="{BASE_URL}/">World Encyclopedia</a></nav>\n<main>\n<article>\n<h1>{title}</h1>\n'
        f'<table class="infobox"><caption>{title}</caption>\n'
        f'<tr><td colspan="2"><img src="{image_url(image_rel)}" alt="{title}" width="256" height="256"></td></tr>\n'
        + "\n".join(rows)
        + f"\n</table>\n{body}\n</article>\n</main>\n</body></html>\n"
    )


def render_index(kg: dict[str, Entity]) -> str:
    items = "\n".join(
        f'<li><a href="{page_url(s)}">{html.escape(e.name)}</a></li>' for s, e in sorted(kg.items())
    )
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>World Encyclopedia</title></head>\n'
        f"<body><h1>World Encyclopedia</h1><ul>\n{items}\n</ul></body></html>\n"
    )
