"""The tree page (onlstm/parsing/tree_page.py): its HTML read with a parser, then the page opened from
disk in a real headless browser (Debian's chromium + chromium-driver, through selenium)."""

from __future__ import annotations

import io
import re
from html.parser import HTMLParser

import pytest

from onlstm.parsing.tree_page import PageHeader, TreeRecord, render_tree_page, tree_svg
from tests.helpers import check_drawn_trees, drawn_trees, needs_browser, open_tree_page, row_ids

# words the page must show as text: markup characters, an entity, quotes, non-ASCII
TRICKY = ["<unk>", "&", "a<b>c", '"quoted"', "don't", "naïve"]
# (id, words, induced, gold, f1): f1 by hand, the Kim et al. sentence F1 (whole-sentence span excluded)
SENTENCES = [
    # induced spans {(1,6),(2,6),(3,6),(4,6)}; gold {(0,2),(2,4),(4,6),(2,6)}: 2 shared, P = R = 2/4
    ("tricky", TRICKY, ["<unk>", ["&", ["a<b>c", ['"quoted"', ["don't", "naïve"]]]]],
     [["<unk>", "&"], [["a<b>c", '"quoted"'], ["don\'t", "naïve"]]], 0.5),
    # induced = gold: F1 1
    ("same", ["the", "cat", "sat"], [["the", "cat"], "sat"], [["the", "cat"], "sat"], 1.0),
    # induced {(1,4),(2,4)}; gold {(0,2),(2,4)}: 1 shared, F1 0.5; written as 0.25 to tell the rows apart
    ("four", ["a", "b", "c", "d"], ["a", ["b", ["c", "d"]]], [["a", "b"], ["c", "d"]], 0.25),
    # induced {(0,2)}; gold {(1,3)}: nothing shared
    ("none", ["x", "y", "z"], [["x", "y"], "z"], ["x", ["y", "z"]], 0.0),
    # two words: no span but the sentence; F1 1 by the convention
    ("two", ["hello", "world"], ["hello", "world"], ["hello", "world"], 1.0),
]
RECORDS = [TreeRecord(id_, words, induced, gold, f1) for id_, words, induced, gold, f1 in SENTENCES]
HEADER = PageHeader("Parsing run <test> & co", layer=2, scores={"sentence F1": 0.4771, "corpus F1": 0.45},
                    notes=["checkpoint: logs/lm/runs/x/last.ckpt"])


class PageReader(HTMLParser):
    """The parts of the page the tests look at: each SVG's class and leaf words, the table rows'
    data attributes, every src / href, the text of elements by id."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.svgs: list[dict] = []
        self.rows: list[dict] = []
        self.links: list[str] = []
        self.ids: dict[str, str] = {}
        self.circles: list[tuple[str, str]] = []  # (svg class, circle class)
        self._in_leaf = False
        self._id_stack: list[str | None] = []
        self.text = ""

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        self.links += [value for name, value in attrs.items() if name in ("src", "href") and value]
        if tag == "svg":
            self.svgs.append({"class": attrs.get("class", ""), "leaves": []})
        elif tag == "text" and attrs.get("class") == "leaf":
            self._in_leaf = True
            self.svgs[-1]["leaves"].append("")
        elif tag == "circle":
            self.circles.append((self.svgs[-1]["class"], attrs.get("class", "")))
        elif "data-index" in attrs:
            self.rows.append(attrs)
        if "id" in attrs:
            self.ids[attrs["id"]] = ""

    def handle_endtag(self, tag):
        if tag == "text":
            self._in_leaf = False

    def handle_data(self, data):
        self.text += data
        if self._in_leaf:
            self.svgs[-1]["leaves"][-1] += data


def read(page: str) -> PageReader:
    reader = PageReader()
    reader.feed(page)
    reader.close()
    return reader


# ----------------------------------------------------------------------------- the HTML
def test_one_svg_per_tree_with_the_words_in_order_and_escaped():
    reader = read(render_tree_page(RECORDS, HEADER))
    assert [s["class"] for s in reader.svgs] == ["tree induced", "tree gold"] * len(RECORDS)
    for record, induced, gold in zip(RECORDS, reader.svgs[::2], reader.svgs[1::2]):
        assert induced["leaves"] == list(record.words), record.id
        assert gold["leaves"] == list(record.words), record.id
    page = render_tree_page(RECORDS, HEADER)
    assert "<unk>" not in page and "&lt;unk&gt;" in page and "a&lt;b&gt;c" in page


def test_the_page_loads_nothing_from_outside():
    page = render_tree_page(RECORDS, HEADER)
    reader = read(page)
    assert not [link for link in reader.links if re.match(r"(?i)([a-z]+:)?//", link)], reader.links
    assert not re.search(r"(?i)https?://|url\(|@import|<script[^>]+src|<link", page)


def test_header_and_rows_carry_the_numbers():
    page = render_tree_page(RECORDS, HEADER)
    reader = read(page)
    assert "Parsing run <test> & co" in reader.text
    assert "5 sentences · trees of layer 2 · sentence F1 47.7 % · corpus F1 45.0 %" in reader.text
    assert "checkpoint: logs/lm/runs/x/last.ckpt" in reader.text
    assert [(r["data-length"], r["data-f1"]) for r in reader.rows] == [
        ("6", "0.500000"), ("3", "1.000000"), ("4", "0.250000"), ("3", "0.000000"), ("2", "1.000000")
    ]
    assert re.search(r'<div class="num">6</div><div class="num">50.0</div>', page)
    assert {"length-min", "length-max", "f1-min", "f1-max", "shown"} <= reader.ids.keys()


def test_shared_constituents_are_filled_in_both_trees():
    svg = read(tree_svg(["a", ["b", ["c", "d"]]], "tree induced", {(0, 2), (2, 4)}))
    assert svg.circles == [("tree induced", "match"), ("tree induced", ""), ("tree induced", "")]  # inner first
    reader = read(render_tree_page(RECORDS, HEADER))
    filled = [sum(1 for cls, mark in reader.circles[start:end] if mark == "match") for start, end in _circle_ranges(reader)]
    assert filled == [2, 2, 1, 1, 1, 1, 0, 0, 0, 0]  # (induced, gold) per sentence: the shared spans, by hand


def _circle_ranges(reader: PageReader) -> list[tuple[int, int]]:
    """[start, end) of each SVG's circles in reader.circles: one circle per constituent."""
    ranges, start = [], 0
    for record in RECORDS:
        for tree in (record.induced, record.gold):
            ranges.append((start, start + _constituents(tree)))
            start = ranges[-1][1]
    assert start == len(reader.circles)
    return ranges


def _constituents(tree) -> int:
    return 0 if isinstance(tree, str) else 1 + sum(_constituents(child) for child in tree)


def test_your_own_sentences_need_no_gold_tree():
    records = [TreeRecord("line 1", ["the", "cat"], ["the", "cat"], text="The cat."), TreeRecord("line 2", ["<unk>"], "<unk>")]
    page = render_tree_page(records, PageHeader("onlstm-parse", layer=1))
    reader = read(page)
    assert [s["class"] for s in reader.svgs] == ["tree induced", "tree induced"]
    assert [s["leaves"] for s in reader.svgs] == [["the", "cat"], ["<unk>"]]
    assert "gold tree" not in reader.text and "F1" not in reader.text and "f1-min" not in reader.ids
    assert "The cat." in reader.text


@pytest.mark.parametrize(
    "record,message",
    [
        (TreeRecord("r1", ["a", "b"], ["a", "c"]), r"record 'r1': the induced tree's leaves \['a', 'c'\] are not its words"),
        (TreeRecord("r2", ["a", "b"], ["a", "b"], gold=["a", ["b", "c"]]), r"record 'r2': the gold tree has 3 words, the sentence 2"),
        (TreeRecord("r3", ["a", "b"], ["a", "b"], gold=["a", "b"], f1=47.7), r"record 'r3': f1 must be a fraction in \[0, 1\], got 47.7"),
    ],
    ids=["leaves", "gold", "f1"],
)
def test_records_that_do_not_fit_are_named(record, message):
    with pytest.raises(ValueError, match=message):
        render_tree_page([record], HEADER)


# ----------------------------------------------------------------------------- in a browser
def open_page(browser, tmp_path, records, header):
    path = tmp_path / "page.html"
    path.write_text(render_tree_page(records, header), encoding="utf-8")
    return open_tree_page(browser, path)


@needs_browser
def test_the_browser_draws_every_tree_with_readable_words(browser, tmp_path):
    open_page(browser, tmp_path, RECORDS, HEADER)
    boxes = drawn_trees(browser)
    assert len(boxes) == 2 * len(RECORDS)
    check_drawn_trees(boxes, [w for r in RECORDS for w in (r.words, r.words)])


@needs_browser
def test_sorting_by_f1_and_length_reorders_the_rows(browser, tmp_path):
    open_page(browser, tmp_path, RECORDS, HEADER)
    assert row_ids(browser) == ["tricky", "same", "four", "none", "two"]
    f1 = browser.find_element("css selector", "#sentences .headings button[data-key=f1]")
    f1.click()
    assert row_ids(browser) == ["none", "four", "tricky", "same", "two"]  # ascending, ties in page order
    f1.click()
    assert row_ids(browser) == ["same", "two", "tricky", "four", "none"]
    browser.find_element("css selector", "#sentences .headings button[data-key=length]").click()
    assert row_ids(browser) == ["two", "same", "none", "four", "tricky"]
    browser.find_element("css selector", "#sentences .headings button[data-key=index]").click()
    assert row_ids(browser) == ["tricky", "same", "four", "none", "two"]


@needs_browser
def test_filtering_by_length_and_f1_hides_rows(browser, tmp_path):
    open_page(browser, tmp_path, RECORDS, HEADER)
    browser.find_element("id", "length-max").send_keys("3")
    assert row_ids(browser, visible_only=True) == ["same", "none", "two"]
    assert browser.find_element("id", "shown").text == "3 of 5 shown"
    browser.find_element("id", "f1-min").send_keys("50")
    assert row_ids(browser, visible_only=True) == ["same", "two"]
    browser.find_element("id", "length-max").clear()
    browser.find_element("id", "f1-max").send_keys("60")
    assert row_ids(browser, visible_only=True) == ["tricky"]
    assert browser.find_element("id", "shown").text == "1 of 5 shown"


@needs_browser
def test_a_screenshot_of_the_page_is_not_blank(browser, tmp_path):
    """Pixels, not the DOM: the screenshot has many colours, and inside each tree's box in view
    there is ink (lines, nodes, words)."""
    from PIL import Image

    open_page(browser, tmp_path, RECORDS, HEADER)
    image = Image.open(io.BytesIO(browser.get_screenshot_as_png())).convert("RGB")
    colours = image.getcolors(maxcolors=1 << 20)
    assert len(colours) > 50, f"{len(colours)} distinct colours: the page looks blank"
    scale = browser.execute_script("return window.devicePixelRatio")
    rects = browser.execute_script(
        "return Array.from(document.querySelectorAll('svg.tree')).map(function (s) { var r = s.getBoundingClientRect(); "
        "return [r.left, r.top, r.right, r.bottom]; });"
    )
    in_view = [r for r in rects if r[3] * scale <= image.height and r[2] * scale <= image.width]
    assert len(in_view) >= 4, f"only {len(in_view)} trees in the screenshot's view"
    for left, top, right, bottom in in_view:
        crop = image.crop(tuple(round(v * scale) for v in (left, top, right, bottom))).convert("L")
        ink = sum(count for count, level in crop.getcolors(maxcolors=1 << 20) if level < 200)
        assert ink > 0.01 * crop.width * crop.height, f"a tree's box at {left:.0f},{top:.0f} is nearly empty"
