"""Raw guest text made safe to print in a terminal, a table cell or a finding.

Everything a guest sends is untrusted: a scheduler under test can make the
kernel, a worker or itself print terminal escape sequences (clear the
screen, move the cursor, rewrite the title, hide text), a carriage return
that overwrites what came before, or bidirectional-override characters
that reorder a line.  ``escape`` turns every character that is not plainly
printable into a visible escape, so what the reader sees is what was sent.

Decisions:

- printable characters, non-ASCII included, stay as they are;
- backslashes stay as they are: this is for display, not a reversible
  encoding, so a literal ``\\x1b`` typed by the guest and an escaped ESC
  read the same (neither does anything to the terminal);
- in single-line mode (the default: table cells, findings, one-line
  reasons) newline, carriage return and tab are escaped as ``\\n``,
  ``\\r``, ``\\t``;
- in multi-line mode newlines and tabs are kept, ``\\r\\n`` becomes
  ``\\n`` (serial consoles end lines so), and a lone ``\\r`` is escaped;
- any other control or format character (C0, DEL, C1, bidi overrides,
  zero-width characters, lone surrogates, unassigned code points) becomes
  ``\\xNN``, ``\\uNNNN`` or ``\\UNNNNNNNN``.
"""

from __future__ import annotations

_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _visible(char: str) -> str:
    code = ord(char)
    if char in _NAMED:
        return _NAMED[char]
    if code < 0x100:
        return f"\\x{code:02x}"
    if code < 0x10000:
        return f"\\u{code:04x}"
    return f"\\U{code:08x}"


def _escape_line(line: str, keep_tabs: bool) -> str:
    if line.isprintable():
        return line
    return "".join(c if c.isprintable() or (keep_tabs and c == "\t") else _visible(c) for c in line)


def escape(text: str, *, multiline: bool = False, limit: int | None = None) -> str:
    """``text`` with every non-printable character shown as an escape.

    ``limit`` (characters of input) shortens long text first and says how
    much was left out, so one guest line cannot fill a screen or a record.
    """
    cut = ""
    if limit is not None and len(text) > limit:
        cut = f"...[{len(text) - limit} more chars]"
        text = text[:limit]
    if not multiline:
        return _escape_line(text, keep_tabs=False) + cut
    lines = text.replace("\r\n", "\n").split("\n")
    return "\n".join(_escape_line(line, keep_tabs=True) for line in lines) + cut


def escape_bytes(data: bytes, *, limit: int | None = None) -> str:
    """Raw bytes from the guest as one escaped line; invalid UTF-8 shows as ``\\xNN``."""
    cut = ""
    if limit is not None and len(data) > limit:
        cut = f"...[{len(data) - limit} more bytes]"
        data = data[:limit]
    text = data.decode("utf-8", errors="surrogateescape")
    # surrogateescape maps each invalid byte to U+DC80..U+DCFF: show the byte itself.
    out = "".join(f"\\x{ord(c) - 0xDC00:02x}" if 0xDC80 <= ord(c) <= 0xDCFF else c for c in text)
    return _escape_line(out, keep_tabs=False) + cut
