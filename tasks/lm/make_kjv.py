"""Build a word-level corpus of about a million tokens from Debian's King James Bible.

Issue 19 asks for a word recipe measured on a corpus of about a million words;
none of the shared corpora is that large. Debian's `bible-kjv-text` package holds
the King James Version (1611, public domain): 31,102 verses, 790,000 words, about
950,000 tokens once punctuation is split off.

    apt-get install bible-kjv        # the `bible` reader and its text
    python tasks/lm/make_kjv.py OUT_DIR

writes OUT_DIR/train.txt, valid.txt and test.txt, one verse a line (verse numbers
and chapter headings removed). Whole chapters are held out: every 20th chapter
from the 8th goes to valid, every 20th from the 18th to test (about 5% each, from
every part of the book), so no held-out verse has its neighbours in training.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
from pathlib import Path

from textrnn.fileio import atomic_write_text

WHOLE_BOOK = "Gen1:1-Rev22:21"
# A verse is indented ("  12 And God said, ..."); a chapter heading is not ("1 Kings 3").
VERSE = re.compile(r"^\s+\d+\s+(.*\S)\s*$")
CHAPTER = re.compile(r"^\S.*\s\d+$")  # "Genesis 1", "Song of Solomon 2"
EXPECTED_VERSES = 31102
VALID_OFFSET, TEST_OFFSET, EVERY = 7, 17, 20


def read_chapters(bible: str) -> list[list[str]]:
    """The verses of every chapter, in order, from the `bible` reader."""
    listing = subprocess.run(
        [bible, "-l", "100000", WHOLE_BOOK], capture_output=True, text=True, check=True
    ).stdout
    return parse_listing(listing)


def parse_listing(listing: str) -> list[list[str]]:
    """Chapters of verses from `bible -l 100000`'s output: headings, then one verse a line."""
    chapters: list[list[str]] = []
    for line in listing.splitlines():
        if not line.strip():
            continue
        verse = VERSE.match(line)
        if verse and chapters:
            chapters[-1].append(verse.group(1))
        elif CHAPTER.match(line):
            chapters.append([])
        else:
            raise ValueError(f"unexpected line from `bible`: {line[:80]!r}")
    return chapters


def split_chapters(chapters: list[list[str]]) -> dict[str, list[str]]:
    """Verses of train / valid / test; whole chapters are held out."""
    splits: dict[str, list[str]] = {"train": [], "valid": [], "test": []}
    for index, verses in enumerate(chapters):
        name = {VALID_OFFSET: "valid", TEST_OFFSET: "test"}.get(index % EVERY, "train")
        splits[name].extend(verses)
    return splits


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out_dir", type=Path, help="folder for train.txt, valid.txt, test.txt")
    args = parser.parse_args(argv)
    bible = shutil.which("bible")
    if bible is None:
        print("make_kjv: the `bible` reader is missing: apt-get install bible-kjv", file=sys.stderr)
        return 2
    try:
        chapters = read_chapters(bible)
    except (subprocess.CalledProcessError, ValueError) as error:
        print(f"make_kjv: {error}", file=sys.stderr)
        return 1
    verses = sum(len(chapter) for chapter in chapters)
    if verses != EXPECTED_VERSES:
        print(f"make_kjv: read {verses} verses, expected {EXPECTED_VERSES}", file=sys.stderr)
        return 1
    args.out_dir.mkdir(parents=True, exist_ok=True)
    for name, lines in split_chapters(chapters).items():
        path = args.out_dir / f"{name}.txt"
        atomic_write_text(path, "\n".join(lines) + "\n")  # never half a file under the name
        words = sum(len(line.split()) for line in lines)
        print(f"{path}: {len(lines):,} verses, {words:,} words")
    return 0


if __name__ == "__main__":
    sys.exit(main())
