"""docs/figures/tree_page.png: a screenshot of the tree page (onlstm/parsing/tree_page.py) of a few test sentences.

The sentences: the first four of 6 to 10 words of the NLTK treebank sample's test half (WSJ
section 01, under the data root). Their "induced" trees are the right-branching baseline's, not
a model's: the figure shows the page, not a result. Needs Debian's chromium for the screenshot.

    python docs/figures/tree_page.py [--data-dir /work/shared/data]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
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
    args = parser.parse_args()

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
    page = render_tree_page(records, header)

    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        raise SystemExit("no chromium on PATH for the screenshot: apt-get install chromium")
    with tempfile.TemporaryDirectory() as tmp:
        html, shot = Path(tmp) / "tree_page.html", Path(tmp) / "shot.png"
        html.write_text(page, encoding="utf-8")
        subprocess.run(
            # headless chromium caps the window at its screen, 1280x800 unless told otherwise
            [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--window-size=1400,820",
             "--screen-info={1600x1000}", f"--screenshot={shot}", html.as_uri()],
            check=True, capture_output=True, timeout=120,
        )
        # a palette of 64 colours keeps the PNG small; the page has few colours
        Image.open(shot).convert("RGB").quantize(64).save(HERE / "tree_page.png", optimize=True)
    print(f"{HERE / 'tree_page.png'}: {len(records)} sentences, mean sentence F1 {100 * mean:.1f} %")


if __name__ == "__main__":
    main()
