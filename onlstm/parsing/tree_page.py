"""A page of trees to look at: induced and gold trees of each sentence side by side, in one HTML file.

:func:`render_tree_page` turns :class:`TreeRecord`s (words, the induced tree, optionally the gold
tree and the sentence F1) and a :class:`PageHeader` (title, chosen layer, the run's F1s) into a
self-contained page: inline CSS and JavaScript, no external URL, so it opens from disk and can be
mailed or archived. Each tree is an inline SVG (:func:`tree_svg`) with the words at the leaves;
a constituent (node) drawn filled is one the other tree of the sentence has too (a span sentence
F1 counts: more than one word, not the whole sentence). A few lines of plain JavaScript sort the table by F1, length or order (click a heading) and filter it by length
and F1 range. Trees are the nested lists of :mod:`onlstm.parsing.trees`; gold trees may also be
``nltk.Tree`` objects (converted with :func:`~onlstm.parsing.trees.as_tree`).
"""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from onlstm.parsing.metrics import sentence_spans
from onlstm.parsing.trees import Tree, as_tree, leaves, to_bracketed

# drawing sizes, in CSS pixels
FONT_SIZE = 12
CHAR_WIDTH = 7.0  # an upper estimate of a 12 px sans-serif character's advance, to leave room for each word
MIN_SLOT = 20  # the narrowest column a word gets
SLOT_PADDING = 8
LEVEL_HEIGHT = 17  # vertical distance between tree levels
MARGIN = 6
NODE_RADIUS = 3.5


@dataclass(frozen=True)
class TreeRecord:
    """One sentence of the page."""

    id: str  # what names the sentence, e.g. "wsj_2300.mrg #3" or "line 12"
    words: Sequence[str]  # the sentence's words, as the trees' leaves
    induced: Tree  # the tree the model induced over ``words``
    gold: Any = None  # the gold tree (nested list or nltk.Tree) over the same number of words, if any
    f1: float | None = None  # sentence F1 of ``induced`` against ``gold``, in [0, 1] (onlstm.parsing.metrics.sentence_f1)
    text: str | None = None  # the sentence as it was given (before tokenising), shown under the id


@dataclass(frozen=True)
class PageHeader:
    """What the top of the page says."""

    title: str
    layer: int | None = None  # the layer whose distances made the induced trees (1-based)
    scores: Mapping[str, float] = field(default_factory=dict)  # the run's F1s as fractions, e.g. {"sentence F1": 0.477}
    notes: Sequence[str] = ()  # further lines: checkpoint, data, commit ...


# ----------------------------------------------------------------------------- one tree
def _slot_width(word: str) -> float:
    return max(MIN_SLOT, CHAR_WIDTH * len(word) + SLOT_PADDING)


def _height(tree: Tree) -> int:
    return 0 if isinstance(tree, str) else 1 + max(_height(child) for child in tree)


def _n(value: float) -> str:
    """A coordinate, to a tenth of a pixel, without trailing zeros (pages of thousands of trees add up)."""
    return f"{value:.1f}".rstrip("0").rstrip(".")


def tree_svg(tree: Tree, css_class: str = "tree", marked: set[tuple[int, int]] | None = None) -> str:
    """One tree as an inline ``<svg>`` element: words in order along the bottom (``<text
    class="leaf">``), a node (``<circle>``) per constituent above them, drawn filled (class
    ``match``) when its word span is in ``marked``, and the edges as one path. The tree's
    bracketed form is its tooltip (``<title>``)."""
    words = leaves(tree)
    slots = [_slot_width(word) for word in words]
    starts = [MARGIN + sum(slots[:i]) for i in range(len(words))]
    leaf_x = [start + slot / 2 for start, slot in zip(starts, slots)]
    top = _height(tree)
    leaf_y = MARGIN + NODE_RADIUS + top * LEVEL_HEIGHT  # where edges meet the words
    width = round(2 * MARGIN + sum(slots))
    height = round(leaf_y + FONT_SIZE + 6 + MARGIN)
    edges: list[str] = []
    nodes: list[str] = []

    def place(node: Tree, start: int) -> tuple[float, float, int]:
        """(x, y) of ``node`` whose first word is ``start``, and the position after its last word."""
        if isinstance(node, str):
            return leaf_x[start], leaf_y, start + 1
        y = MARGIN + NODE_RADIUS + (top - _height(node)) * LEVEL_HEIGHT
        points, end = [], start
        for child in node:
            cx, cy, end = place(child, end)
            points.append((cx, cy))
        x = (points[0][0] + points[-1][0]) / 2
        edges.extend(f"M{_n(x)} {_n(y)}L{_n(cx)} {_n(cy)}" for cx, cy in points)
        match = ' class="match"' if marked and (start, end) in marked else ""
        nodes.append(f'<circle{match} cx="{_n(x)}" cy="{_n(y)}" r="{NODE_RADIUS}"/>')
        return x, y, end

    place(tree, 0)
    baseline = _n(leaf_y + FONT_SIZE + 2)
    texts = [f'<text class="leaf" x="{_n(x)}" y="{baseline}">{html.escape(word)}</text>' for word, x in zip(words, leaf_x)]
    path = f'<path d="{"".join(edges)}"/>' if edges else ""
    return (
        f'<svg class="{css_class}" width="{width}" height="{height}" viewBox="0 0 {width} {height}" role="img">'
        f"<title>{html.escape(to_bracketed(tree))}</title>{path}{''.join(nodes)}{''.join(texts)}</svg>"
    )


# ----------------------------------------------------------------------------- the page
def _percent(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:.1f}"


def _checked(record: TreeRecord) -> tuple[Tree, Tree | None]:
    """(induced, gold as a nested list); ValueError naming the record when the trees do not fit its words."""
    words = list(record.words)
    if leaves(record.induced) != words:
        raise ValueError(f"record {record.id!r}: the induced tree's leaves {leaves(record.induced)} are not its words {words}")
    gold = None if record.gold is None else as_tree(record.gold)
    if gold is not None and len(leaves(gold)) != len(words):
        raise ValueError(f"record {record.id!r}: the gold tree has {len(leaves(gold))} words, the sentence {len(words)}")
    if record.f1 is not None and not 0.0 <= record.f1 <= 1.0:
        raise ValueError(f"record {record.id!r}: f1 must be a fraction in [0, 1], got {record.f1}")
    return record.induced, gold


def _row(index: int, record: TreeRecord, with_gold: bool) -> str:
    induced, gold = _checked(record)
    # marked: the spans sentence F1 counts (longer than one word, the whole sentence left out)
    induced_spans, gold_spans = sentence_spans(induced), (sentence_spans(gold) if gold is not None else set())
    f1 = "" if record.f1 is None else f"{record.f1:.6f}"
    text = f'<div class="text">{html.escape(record.text)}</div>' if record.text else ""
    cells = [f'<div class="id">{html.escape(record.id)}{text}</div>', f'<div class="num">{len(record.words)}</div>']
    if with_gold:
        cells.append(f'<div class="num">{_percent(record.f1)}</div>')
    cells.append(f'<div class="trees">{tree_svg(induced, "tree induced", gold_spans)}</div>')
    if with_gold:
        drawn = tree_svg(gold, "tree gold", induced_spans) if gold is not None else '<span class="none">no gold tree</span>'
        cells.append(f'<div class="trees">{drawn}</div>')
    return f'<div class="sentence" data-index="{index}" data-length="{len(record.words)}" data-f1="{f1}">{"".join(cells)}</div>'


def render_tree_page(records: Sequence[TreeRecord], header: PageHeader) -> str:
    """The whole page as one HTML string. Without any gold tree (your own sentences) the page has
    no gold or F1 column and no F1 filter."""
    with_gold = any(r.gold is not None for r in records)
    summary = [f"{len(records)} sentence{'s' * (len(records) != 1)}"]
    if header.layer is not None:
        summary.append(f"trees of layer {header.layer}")
    summary += [f"{html.escape(name)} {_percent(value)} %" for name, value in header.scores.items()]
    notes = "".join(f"<li>{html.escape(note)}</li>" for note in header.notes)
    layer = f" (layer {header.layer})" if header.layer is not None else ""
    headings = ['<button type="button" data-key="index">sentence</button>', '<button type="button" data-key="length">length</button>']
    if with_gold:
        headings.append('<button type="button" data-key="f1">F1 %</button>')
    headings.append(f"<span>induced tree{layer}</span>")
    if with_gold:
        headings.append("<span>gold tree</span>")
    f1_filter = (
        '<label>F1 % from <input id="f1-min" type="number" min="0" max="100" step="any"></label> '
        '<label>to <input id="f1-max" type="number" min="0" max="100" step="any"></label>'
        if with_gold else ""
    )
    legend = (
        "A filled node is a constituent both trees have (the whole sentence aside, as sentence F1 counts them); "
        "click a heading to sort (again: reverse)."
        if with_gold else "Click a heading to sort (again: reverse)."
    )
    rows = "\n".join(_row(i, record, with_gold) for i, record in enumerate(records))
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{html.escape(header.title)}</title>
<style>{_CSS}</style>
</head>
<body>
<header>
<h1>{html.escape(header.title)}</h1>
<p class="summary">{" · ".join(summary)}</p>
<ul class="notes">{notes}</ul>
</header>
<form id="controls" onsubmit="return false">
<label>length from <input id="length-min" type="number" min="1" step="1"></label>
<label>to <input id="length-max" type="number" min="1" step="1"></label>
{f1_filter}
<span id="shown"></span>
<p class="legend">{legend}</p>
</form>
<div id="sentences" class="{"with-gold" if with_gold else "no-gold"}">
<div class="headings">{"".join(headings)}</div>
<div class="rows">
{rows}
</div>
</div>
<script>{_JS}</script>
</body>
</html>
"""


_CSS = """
body { font: 14px/1.4 system-ui, sans-serif; margin: 1.5em; color: #222; }
h1 { font-size: 1.3em; margin: 0 0 .2em; }
.summary { font-size: 1.1em; margin: .2em 0; }
.notes { color: #555; margin: .2em 0 1em; padding-left: 1.2em; }
#controls { margin-bottom: 1em; }
#controls input { width: 5em; }
#shown { margin-left: 1em; color: #555; }
.legend { color: #555; margin: .3em 0; }
/* one grid per row, the same columns in each: the trees of all rows line up */
.headings, .sentence { display: grid; column-gap: 12px; padding: 4px 0; border-bottom: 1px solid #ddd; }
.with-gold .headings, .with-gold .sentence { grid-template-columns: 10em 4em 4em minmax(0, 1fr) minmax(0, 1fr); }
.no-gold .headings, .no-gold .sentence { grid-template-columns: 14em 4em minmax(0, 1fr); }
.sentence[hidden] { display: none; }  /* the grid would override the hidden attribute's own display: none */
.headings { font-weight: bold; position: sticky; top: 0; background: #fff; z-index: 1; }
/* rows out of view are neither laid out nor painted: pages of thousands of sentences stay quick */
.sentence { content-visibility: auto; contain-intrinsic-size: auto 160px; }
.headings button { font: inherit; border: 0; background: none; cursor: pointer; padding: 0; text-align: left; }
.headings button[data-order=ascending]::after { content: " \\25B2"; }
.headings button[data-order=descending]::after { content: " \\25BC"; }
.num { text-align: right; font-variant-numeric: tabular-nums; }
.id { overflow-wrap: anywhere; }
.id .text { color: #555; }
.trees { overflow-x: auto; }
svg.tree path { stroke: #777; stroke-width: 1.2; fill: none; }
svg.tree circle { fill: #fff; stroke: #777; stroke-width: 1.2; }
svg.induced circle.match { fill: #2a7ab9; stroke: #2a7ab9; }
svg.gold circle.match { fill: #e07b00; stroke: #e07b00; }
svg.tree text.leaf { font: 12px sans-serif; text-anchor: middle; fill: #111; }
.none { color: #888; }
"""

# sort by a row's data-* number (rows without one last, ties in page order), filter by ranges
_JS = """
(function () {
  var body = document.querySelector("#sentences .rows");
  var rows = Array.prototype.slice.call(body.children);
  var buttons = document.querySelectorAll("#sentences .headings button");
  var key = "index", ascending = true;
  function number(row, name) { var v = row.dataset[name]; return v === "" ? null : Number(v); }
  function bound(id, otherwise) {
    var input = document.getElementById(id);
    return input && input.value !== "" ? Number(input.value) : otherwise;
  }
  function sort() {
    rows.sort(function (a, b) {
      var x = number(a, key), y = number(b, key);
      if (x === null || y === null) return (x === null) - (y === null) || number(a, "index") - number(b, "index");
      return (ascending ? x - y : y - x) || number(a, "index") - number(b, "index");
    });
    rows.forEach(function (row) { body.appendChild(row); });
    buttons.forEach(function (b) { b.dataset.order = b.dataset.key === key ? (ascending ? "ascending" : "descending") : ""; });
  }
  function filter() {
    var lengthMin = bound("length-min", -Infinity), lengthMax = bound("length-max", Infinity);
    var f1Min = bound("f1-min", -Infinity), f1Max = bound("f1-max", Infinity), f1Limited = f1Min > -Infinity || f1Max < Infinity;
    var shown = 0;
    rows.forEach(function (row) {
      var n = number(row, "length"), f1 = number(row, "f1");
      var visible = n >= lengthMin && n <= lengthMax && (!f1Limited || (f1 !== null && 100 * f1 >= f1Min && 100 * f1 <= f1Max));
      row.hidden = !visible;
      shown += visible ? 1 : 0;
    });
    document.getElementById("shown").textContent = shown + " of " + rows.length + " shown";
  }
  buttons.forEach(function (b) {
    b.addEventListener("click", function () {
      ascending = b.dataset.key === key ? !ascending : true;
      key = b.dataset.key;
      sort();
    });
  });
  document.querySelectorAll("#controls input").forEach(function (input) {
    input.addEventListener("input", filter);
    input.addEventListener("change", filter);
  });
  sort();
  filter();
})();
"""
