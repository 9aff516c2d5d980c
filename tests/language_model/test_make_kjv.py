"""tasks/lm/make_kjv.py: the million-word corpus of issue 19, built from Debian's Bible."""

from __future__ import annotations

import importlib.util

import pytest

from helpers import REPO

# The start of `bible -l 100000 Gen1:1-Rev22:21` (bible-kjv 4.38), and a numbered book's
# heading, which looks like a verse but is not indented.
LISTING = """
Genesis 1

  1 In the beginning God created the heaven and the earth.
  2 And the earth was without form, and void; and darkness was upon the face of the deep.

Genesis 2

  1 Thus the heavens and the earth were finished, and all the host of them.

1 Kings 1

  1 Now king David was old and stricken in years;
"""


@pytest.fixture(scope="module")
def make_kjv():
    spec = importlib.util.spec_from_file_location("make_kjv", REPO / "tasks/lm/make_kjv.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_listing_is_read_as_chapters_of_verses(make_kjv):
    chapters = make_kjv.parse_listing(LISTING)
    assert chapters == [
        [
            "In the beginning God created the heaven and the earth.",
            "And the earth was without form, and void; and darkness was upon the face of the deep.",
        ],
        ["Thus the heavens and the earth were finished, and all the host of them."],
        ["Now king David was old and stricken in years;"],
    ]


def test_an_unexpected_line_is_an_error_not_a_verse(make_kjv):
    with pytest.raises(ValueError, match="unexpected line"):
        make_kjv.parse_listing("Genesis 1\n  1 In the beginning\n<html>\n")


def test_whole_chapters_are_held_out_from_every_part(make_kjv):
    chapters = [[f"chapter {index} verse {verse}" for verse in range(3)] for index in range(100)]
    splits = make_kjv.split_chapters(chapters)
    held_out = {
        name: sorted({int(line.split()[1]) for line in splits[name]}) for name in ("valid", "test")
    }
    assert held_out == {"valid": [7, 27, 47, 67, 87], "test": [17, 37, 57, 77, 97]}
    assert len(splits["train"]) == 90 * 3
    assert not set(splits["train"]) & (set(splits["valid"]) | set(splits["test"]))
