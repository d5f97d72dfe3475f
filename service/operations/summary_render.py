"""Render the employer-safe work summary twice from one content model: as the XHTML narrative
of a FHIR Composition and as a PDF (fpdf2). One model, so the two can never say different things.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from html import escape

from fpdf import FPDF

XHTML = "http://www.w3.org/1999/xhtml"


@dataclass
class Section:
    """A titled part of the summary: paragraphs, then a bulleted list."""

    title: str
    paragraphs: list[str] = field(default_factory=list)
    items: list[str] = field(default_factory=list)


@dataclass
class Summary:
    title: str
    person: str
    date: str
    sections: list[Section]


def section_div(section: Section) -> str:
    """The XHTML narrative of one section (a Composition.section.text.div)."""
    return f'<div xmlns="{XHTML}">{_section_body(section)}</div>'


def _section_body(section: Section) -> str:
    out = [f"<h2>{escape(section.title)}</h2>"]
    out += [f"<p>{escape(p)}</p>" for p in section.paragraphs]
    if section.items:
        out.append("<ul>" + "".join(f"<li>{escape(i)}</li>" for i in section.items) + "</ul>")
    return "".join(out)


def document_div(summary: Summary) -> str:
    """The whole document as one narrative (Composition.text.div)."""
    head = (f"<h1>{escape(summary.title)}</h1><p><b>{escape(summary.person)}</b>, "
            f"{escape(summary.date)}</p>")
    return f'<div xmlns="{XHTML}">{head}' + "".join(_section_body(s) for s in summary.sections) + "</div>"


_PLAIN = str.maketrans({"\u2013": "-", "\u2014": "-", "\u2018": "'", "\u2019": "'", "\u201c": '"',
                        "\u201d": '"', "\u2026": "...", "\u00a0": " ", "\u2022": "-"})


def _latin1(text: str) -> str:
    """The PDF's core font (Helvetica) speaks Latin-1: map typographic punctuation to plain
    characters and replace what is left over, so no text can make rendering fail."""
    return text.translate(_PLAIN).encode("latin-1", "replace").decode("latin-1")


def pdf(summary: Summary, created: datetime) -> bytes:
    """An A4 PDF with the same content as the narrative."""
    doc = FPDF(format="A4")
    doc.set_creation_date(created)
    doc.set_title(_latin1(summary.title))
    doc.set_author("pgo-work")
    doc.set_auto_page_break(auto=True, margin=18)
    doc.add_page()
    doc.set_font("Helvetica", "B", 16)
    doc.multi_cell(0, 8, _latin1(summary.title), new_x="LMARGIN", new_y="NEXT")
    doc.set_font("Helvetica", "", 11)
    doc.multi_cell(0, 6, _latin1(f"{summary.person}, {summary.date}"), new_x="LMARGIN", new_y="NEXT")
    for section in summary.sections:
        doc.ln(3)
        doc.set_font("Helvetica", "B", 13)
        doc.multi_cell(0, 7, _latin1(section.title), new_x="LMARGIN", new_y="NEXT")
        doc.set_font("Helvetica", "", 11)
        for paragraph in section.paragraphs:
            doc.multi_cell(0, 6, _latin1(paragraph), new_x="LMARGIN", new_y="NEXT")
        for item in section.items:
            doc.multi_cell(0, 6, _latin1(f"- {item}"), new_x="LMARGIN", new_y="NEXT")
    return bytes(doc.output())
