"""docs/figures/tree_page.png: a screenshot of the tree page (onlstm/parsing/tree_page.py).

With ``--page``: the page a parsing run wrote (``<run>/parsing/trees.html``), as it opens. Without:
a demonstration page of the first four sentences of 6 to 10 words of the NLTK treebank sample's
test half (WSJ section 01, under the data root) whose "induced" trees are the right-branching
baseline's, not a model's. Needs Debian's chromium and
chromium-driver for the screenshot.

    python docs/figures/tree_page.py --page logs/.../parsing/trees.html [--max-length 12]
    python docs/figures/tree_page.py [--data-dir /work/shared/data]
"""

from __future__ import annotations

import argparse
import io
import os
import shutil
import tempfile
from pathlib import Path

from PIL import Image

from datamodules.treebank import read_treebank
from onlstm.parsing.metrics import sentence_f1
from onlstm.parsing.tree_page import PageHeader, TreeRecord, render_tree_page
from onlstm.parsing.trees import right_branching

HERE = Path(__file__).resolve().parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=os.environ.get("ONLSTM_DATA_DIR", "data"))
    parser.add_argument("--count", type=int, default=4)
    parser.add_argument("--page", type=Path, help="a parsing run's parsing/trees.html to photograph instead")
    parser.add_argument("--max-length", type=int, help="with --page: show only sentences of at most this many words")
    args = parser.parse_args()
    if args.page is not None:
        if not args.page.is_file():
            raise SystemExit(f"{args.page}: no such page (a parsing run writes <run>/parsing/trees.html)")
        screenshot(args.page.read_text(encoding="utf-8"), args.max_length)
        print(f"{HERE / 'tree_page.png'}: {args.page}")
        return

    sentences = read_treebank(Path(args.data_dir) / "treebank" / "combined", sections=[1])
    chosen = [s for s in sentences if 6 <= len(s.words) <= 10][: args.count]
    records = []
    for s in chosen:
        induced = right_branching(s.words)
        records.append(TreeRecord(f"{s.file} #{s.number}", s.words, induced, s.gold, sentence_f1(induced, s.gold)))
    mean = sum(r.f1 for r in records) / len(records)
    header = PageHeader(
        "Right-branching trees against gold, WSJ section 01 (NLTK sample)",
        scores={"mean sentence F1": mean},
        notes=["the induced trees here are the right-branching baseline's: a demonstration of the page, made by "
               "docs/figures/tree_page.py"],
    )
    screenshot(render_tree_page(records, header))
    print(f"{HERE / 'tree_page.png'}: {len(records)} sentences, mean sentence F1 {100 * mean:.1f} %")


def screenshot(page: str, max_length: int | None = None) -> None:
    """Photographs the page in headless chromium (selenium, as tests/test_tree_page.py drives it),
    after typing ``max_length`` into the page's own length filter."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    driver_path = shutil.which("chromedriver")
    if driver_path is None:
        raise SystemExit("no chromedriver on PATH for the screenshot: apt-get install chromium chromium-driver")
    options = webdriver.ChromeOptions()
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--window-size=1500,1000"):
        options.add_argument(flag)
    browser = webdriver.Chrome(service=Service(executable_path=driver_path), options=options)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            html = Path(tmp) / "tree_page.html"
            html.write_text(page, encoding="utf-8")
            browser.get(html.as_uri())
            if max_length is not None:
                browser.find_element("id", "length-max").send_keys(str(max_length))
            png = browser.get_screenshot_as_png()
    finally:
        browser.quit()
    # a palette of 64 colours keeps the PNG small; the page has few colours
    Image.open(io.BytesIO(png)).convert("RGB").quantize(64).save(HERE / "tree_page.png", optimize=True)


if __name__ == "__main__":
    main()
