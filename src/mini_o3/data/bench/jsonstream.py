"""``iter_json_array``: the items of a file holding one JSON array, read in chunks.

MME-RealWorld's Base64 shards are ~4 GB JSON arrays of items with the image inline; loading
one whole needs several times its size in memory. This reader keeps only a window of the file:
it decodes chunks of UTF-8, and ``json.JSONDecoder.raw_decode`` parses one item at a time from
the window; an item cut by the window's end is parsed again once more text has been read (the
read size doubles while one item does not fit, so a large item costs O(size), not O(size^2)).
Memory is bounded by the largest item plus one chunk; no dependency beyond the standard library.
"""

from __future__ import annotations

import codecs
import json
from pathlib import Path
from typing import Any, Iterator

#: Characters read at a time (the window grows only while one item does not fit).
CHUNK_CHARS = 1 << 18
#: An item larger than this is refused (a file that is not an array of items, or is corrupt).
MAX_ITEM_CHARS = 1 << 30
_WHITESPACE = " \t\n\r"
#: A decode error this close to the window's end may be a cut item (``"\\uXXXX"``, ``false``).
_CUT_MARGIN = 8
_NUMBER_CHARS = "0123456789.eE+-"


class _Window:
    """A sliding window over the decoded text of a file."""

    def __init__(self, handle, chunk_chars: int) -> None:
        self.handle = handle
        self.decoder = codecs.getincrementaldecoder("utf-8-sig")()
        self.chunk = chunk_chars
        self.text = ""
        self.pos = 0
        self.offset = 0  # characters dropped before text[0]
        self.eof = False

    def more(self, at_least: int) -> bool:
        """Read about ``at_least`` more characters; drops what was consumed. False at EOF."""
        if self.eof:
            return False
        data = self.handle.read(max(at_least, self.chunk))
        self.eof = not data
        self.offset += self.pos
        self.text = self.text[self.pos:] + self.decoder.decode(data, final=self.eof)
        self.pos = 0
        return True

    def skip_space(self) -> str:
        """The next non-whitespace character (not consumed), or "" at the end of the file."""
        while True:
            while self.pos < len(self.text) and self.text[self.pos] in _WHITESPACE:
                self.pos += 1
            if self.pos < len(self.text):
                return self.text[self.pos]
            if not self.more(self.chunk):
                return ""

    def where(self) -> str:
        return f"character {self.offset + self.pos}"


def iter_json_array(
    path: Path, *, chunk_chars: int = CHUNK_CHARS, max_item_chars: int = MAX_ITEM_CHARS
) -> Iterator[Any]:
    """Yield the items of the JSON array in ``path`` one by one; a file that is not one JSON
    array (or is cut short) raises ``ValueError`` naming the file and the character offset."""
    decoder = json.JSONDecoder()
    with open(path, "rb") as handle:
        window = _Window(handle, chunk_chars)
        try:
            if window.skip_space() != "[":
                raise ValueError(f"{path}: expected a JSON list of rows (a file starting with '[')")
            window.pos += 1
            first = True
            while True:
                head = window.skip_space()
                if not head:
                    raise ValueError(f"{path}: the list is cut short at {window.where()}")
                if head == "]":
                    window.pos += 1
                    break
                if not first:
                    if head != ",":
                        raise ValueError(f"{path}: expected ',' or ']' at {window.where()}, got {head!r}")
                    window.pos += 1
                    window.skip_space()
                yield _next_item(window, decoder, path, max_item_chars)
                first = False
            if window.skip_space():
                raise ValueError(f"{path}: unexpected text after the list at {window.where()}")
        except UnicodeDecodeError as exc:
            raise ValueError(f"{path}: not UTF-8: {exc}") from None


def _next_item(window: _Window, decoder: json.JSONDecoder, path: Path, max_item_chars: int) -> Any:
    grow = window.chunk
    while True:
        try:
            item, end = decoder.raw_decode(window.text, window.pos)
            if window.eof or not _number_may_go_on(item, window.text, end):
                window.pos = end
                return item
        except json.JSONDecodeError as exc:
            if window.eof or not _maybe_cut(exc, len(window.text)):
                raise ValueError(f"{path}: not valid JSON at character {window.offset + exc.pos}: {exc.msg}") from None
        if len(window.text) - window.pos > max_item_chars:
            raise ValueError(f"{path}: an item at {window.where()} is larger than {max_item_chars} characters")
        window.more(grow)
        grow *= 2


def _number_may_go_on(item: Any, text: str, end: int) -> bool:
    """Whether a number parsed up to the window's end (or to a digit, ``.``, ``e`` …) may be the
    start of a longer one; strings, containers and literals end with their own delimiter."""
    if isinstance(item, bool) or not isinstance(item, (int, float)):
        return False
    return end == len(text) or text[end] in _NUMBER_CHARS


def _maybe_cut(exc: json.JSONDecodeError, length: int) -> bool:
    """Whether the error may come from the window ending inside the item: an unterminated string,
    or an error within the last few characters (a literal, number or escape cut short)."""
    return exc.msg.startswith("Unterminated string") or exc.pos >= length - _CUT_MARGIN
