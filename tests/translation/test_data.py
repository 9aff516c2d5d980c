"""Reading sentence pairs: aligned files, empty pairs counted."""

from __future__ import annotations

import pytest

from textrnn.errors import DataError
from textrnn.translation.data import read_pairs

from .tiny import PAIRS, write_pairs


def test_line_count_mismatch_names_both_counts(tmp_path):
    source, target = write_pairs(tmp_path, PAIRS[:4])
    target.write_text("eins\nzwei\n", encoding="utf-8")
    with pytest.raises(DataError, match="4 lines but .* has 2"):
        read_pairs(str(source), str(target))


def test_empty_lines_are_skipped_and_counted(tmp_path):
    source, target = write_pairs(tmp_path, [("a b", "x y"), ("", "z"), ("c", ""), ("d", "w")])
    pairs = read_pairs(str(source), str(target))
    assert pairs.sources == ["a b", "d"] and pairs.skipped_empty == 2
    assert "skipped 2 pair(s)" in pairs.notes[0]
