"""Bar charts of a report's distributions as SVG, drawn on the server in plain Python (no JavaScript, no library).

The document is built with ElementTree, so every text is escaped and the result is always well-formed XML. It is
self-contained (no external fonts, styles or scripts) so that a strict Content-Security-Policy can embed it, and
accessible: `role="img"`, a <title> and <desc>, and a <title> on every bar that screen readers and tooltips read.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from typing import Final, Literal

from exchange.reports.schemas import Bucket, Distribution

Language = Literal["en", "ru"]
SVG_NS: Final = "http://www.w3.org/2000/svg"
WIDTH, HEIGHT = 640, 320
MARGIN_LEFT, MARGIN_RIGHT, MARGIN_TOP, MARGIN_BOTTOM = 48, 16, 48, 56
BAR_COLOUR: Final = "#2f6f8f"  # 5.6:1 against white (WCAG AA for graphical objects needs 3:1)
INK: Final = "#1a1a1a"

_UNITS: Final = {"en": {"hours": "h", "days": "d"}, "ru": {"hours": "ч", "days": "дн."}}
_WORDS: Final = {
    "en": {
        "count": "referrals",
        "median": "median",
        "p90": "90th percentile",
        "none": "no referrals in this period",
        "of": "of",
    },
    "ru": {
        "count": "направлений",
        "median": "медиана",
        "p90": "90-й процентиль",
        "none": "нет направлений за период",
        "of": "из",
    },
}


def bucket_text(bucket: Bucket, unit: str, language: Language) -> str:
    short = _UNITS[language][unit]
    if bucket.upper is None:
        return f"≥ {bucket.lower:g} {short}"
    return f"{bucket.lower:g}–{bucket.upper:g} {short}"


def distribution_svg(distribution: Distribution, *, title: str, language: Language = "en") -> bytes:
    """The chart as a standalone SVG document (UTF-8, with an XML declaration)."""
    document: bytes = ET.tostring(
        _chart(distribution, title, language, "chart"), encoding="utf-8", xml_declaration=True
    )
    return document


def distribution_svg_inline(distribution: Distribution, *, title: str, language: Language, element_id: str) -> str:
    """The chart as an <svg> element for an HTML page; `element_id` keeps its ids unique among several charts."""
    return ET.tostring(_chart(distribution, title, language, element_id), encoding="unicode")


def _chart(distribution: Distribution, title: str, language: Language, element_id: str) -> ET.Element:
    """One bar per bucket, its height proportional to the bucket's count, with the count above it."""
    words = _WORDS[language]
    ET.register_namespace("", SVG_NS)
    svg = ET.Element(
        f"{{{SVG_NS}}}svg",
        {
            "width": str(WIDTH),
            "height": str(HEIGHT),
            "viewBox": f"0 0 {WIDTH} {HEIGHT}",
            "role": "img",
            "aria-labelledby": f"{element_id}-title {element_id}-desc",
            "font-family": "sans-serif",
            "font-size": "12",
        },
    )
    _text(svg, title, id=f"{element_id}-title", tag="title")
    _text(svg, _summary(distribution, language), id=f"{element_id}-desc", tag="desc")
    _text(svg, title, x=str(MARGIN_LEFT), y="20", fill=INK, **{"font-size": "15", "font-weight": "bold"})
    _text(svg, _summary(distribution, language), x=str(MARGIN_LEFT), y="38", fill=INK)

    plot_width = WIDTH - MARGIN_LEFT - MARGIN_RIGHT
    plot_height = HEIGHT - MARGIN_TOP - MARGIN_BOTTOM
    baseline = MARGIN_TOP + plot_height
    axis = {"x1": str(MARGIN_LEFT), "y1": str(baseline), "x2": str(WIDTH - MARGIN_RIGHT), "y2": str(baseline)}
    ET.SubElement(svg, f"{{{SVG_NS}}}line", {**axis, "stroke": INK})
    buckets = distribution.buckets
    tallest = max((b.count for b in buckets), default=0)
    slot = plot_width / max(len(buckets), 1)
    bar_width = slot * 0.7
    for index, bucket in enumerate(buckets):
        label = bucket_text(bucket, distribution.unit, language)
        height = 0.0 if tallest == 0 else plot_height * bucket.count / tallest
        x = MARGIN_LEFT + index * slot + (slot - bar_width) / 2
        bar = ET.SubElement(
            svg,
            f"{{{SVG_NS}}}rect",
            {
                "class": "bar",
                "data-bucket": label,
                "data-count": str(bucket.count),
                "x": _n(x),
                "y": _n(baseline - height),
                "width": _n(bar_width),
                "height": _n(height),
                "fill": BAR_COLOUR,
            },
        )
        _text(bar, f"{label}: {bucket.count} {words['of']} {distribution.count}", tag="title")
        centre = _n(x + bar_width / 2)
        _text(svg, str(bucket.count), x=centre, y=_n(baseline - height - 4), fill=INK, **{"text-anchor": "middle"})
        _text(svg, label, x=centre, y=str(baseline + 18), fill=INK, **{"text-anchor": "middle"})
    return svg


def _summary(distribution: Distribution, language: Language) -> str:
    words, short = _WORDS[language], _UNITS[language][distribution.unit]
    if distribution.count == 0:
        return words["none"]
    return (
        f"{distribution.count} {words['count']}; {words['median']} {distribution.median:g} {short}, "
        f"{words['p90']} {distribution.p90:g} {short}"
    )


def _text(parent: ET.Element, content: str, *, tag: str = "text", **attributes: str) -> ET.Element:
    element = ET.SubElement(parent, f"{{{SVG_NS}}}{tag}", {k.replace("_", "-"): v for k, v in attributes.items()})
    element.text = content
    return element


def _n(value: float) -> str:
    return f"{value:.1f}"
