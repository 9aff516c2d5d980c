"""The text of a growing stream of token ids, detokenizing only a window of its last ids.

Streaming shows a continuation piece by piece. Detokenizing the whole continuation
again after every chunk (or token) would cost time growing with the square of its
length: a stream of 10,000 tokens would detokenize about 50 million ids. A
`StreamText` keeps an anchor instead: the text is `before_anchor` (fixed) plus the
text of `ids[anchor:]`, the window a caller detokenizes. When the window passes
`2 * window` ids, the anchor moves to the last `window` ids: the caller
detokenizes those once (`move_ids`), and the text before them is the whole text
minus theirs. A tokenizer whose text at that boundary depends on what comes before
(the window's text is not a suffix of the whole) keeps the old anchor and tries
again a window later, so the text is always exactly what detokenizing every id
would give.

Plain Python (no TensorFlow, no numpy): the server and the edge runtime use it too.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

DEFAULT_WINDOW = 256  # ids kept after a move: many words of context around the boundary


class StreamText:
    """Ids of one stream, its text so far and the part of it already shown."""

    def __init__(self, window: int | None = None) -> None:
        window = DEFAULT_WINDOW if window is None else window  # read now: tests lower it
        if window < 1:
            raise ValueError(f"window must be at least 1, not {window}")
        self.window = window
        self.ids: list[int] = []
        self.anchor = 0  # the window starts at ids[anchor]
        self.before_anchor = ""  # the text of ids[:anchor], fixed once the anchor moved
        self.text = ""  # the whole text after the last `update`
        self.shown = ""  # the prefix of `text` handed out as pieces
        self._next_move = 2 * window  # a move is tried when len(ids) - anchor passes this

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def tail(self) -> list[int]:
        """The ids to detokenize for `update`: the window from the anchor on."""
        return self.ids[self.anchor :]

    def extend(self, ids: Iterable[int]) -> None:
        self.ids.extend(int(i) for i in ids)

    def update(self, tail_text: str) -> str:
        """Take the text of `tail` (after the last `extend`): the new piece to show, or ""
        while a later id rewrites text already shown (what follows ends up extending it)."""
        self.text = self.before_anchor + tail_text
        if not self.text.startswith(self.shown) or self.text == self.shown:
            return ""
        piece, self.shown = self.text[len(self.shown) :], self.text
        return piece

    @property
    def move_due(self) -> bool:
        """True when the caller should detokenize `move_ids` and call `move`."""
        return len(self.ids) - self.anchor > self._next_move

    @property
    def move_ids(self) -> list[int]:
        return self.ids[-self.window :]

    def move_if_due(self, detokenize: Callable[[list[int]], str]) -> None:
        """`move` with `detokenize(move_ids)` when a move is due (one stream's way; the
        server's rows batch the `detokenize` calls of every stream due)."""
        if self.move_due:
            self.move(detokenize(self.move_ids))

    def move(self, window_text: str) -> bool:
        """Move the anchor to `move_ids`, given their text; False (anchor kept, next try a
        window later) when that text is not a suffix of the whole text."""
        if window_text and self.text.endswith(window_text):
            self.anchor = len(self.ids) - self.window
            self.before_anchor = self.text[: len(self.text) - len(window_text)]
            self._next_move = 2 * self.window
            return True
        self._next_move = len(self.ids) - self.anchor + self.window
        return False
