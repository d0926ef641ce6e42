"""Text that SQLite can hold, and back: for paths, hosts, templates and ids that came off the wire.

mitmproxy decodes paths and headers with `surrogateescape`, so a raw byte that is not UTF-8
(`GET /caf\\xe9`) is a lone surrogate in the str, and Python's sqlite3 refuses to bind such a
str ("surrogates not allowed"): the row, and the batch it was written in, failed. Such a text
is stored as a BLOB of its raw bytes in the same column (SQLite columns are dynamically typed);
every other text stays TEXT, so the store reads as before. `from_column` turns either back into
the str mitmproxy gave, so the bytes replay as they came and the same raw path matches again.
A BLOB never equals a TEXT in SQLite: bind the value of a lookup through `to_column` too.
"""

from __future__ import annotations


def to_column(text: str | None) -> str | bytes | None:
    """`text` as SQLite can bind it: itself if it is valid UTF-8 (nearly always), else the
    bytes it stands for. A lone surrogate that no wire byte makes (a HAR's `\\ud800`) is kept
    as its UTF-8-like bytes: stored, not dropped, read back as those bytes."""
    if text is None or text.isascii():
        return text
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        try:
            return text.encode("utf-8", "surrogateescape")
        except UnicodeEncodeError:
            return text.encode("utf-8", "surrogatepass")


def from_column(value: str | bytes | None) -> str | None:
    """What `to_column` stored, as the str it was made from (a BLOB read with surrogateescape)."""
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value).decode("utf-8", "surrogateescape")
    return value
