"""Page counts from a few ranged reads: a PDF's trailer and cross-reference sections, a TIFF's IFD chain.

The sharded listing needs every document's page count (:mod:`~airflow_provider_deepocr.core.shards`).
Reading a one-megabyte PDF whole to count its pages costs a megabyte through the listing worker;
its ``/Count`` is in two small objects the trailer points to. :func:`ranged_page_count` reads:

* PDF: the first block (the ``%PDF-`` header, as :func:`render.detect_media_type` checks it), the
  last blocks (``startxref``, which must lie in the last 1024 bytes as MuPDF looks for it; the
  ``%%EOF`` marker after the last object, or the file counts as truncated), the cross-reference
  sections (tables or streams, hybrid ``/XRefStm`` too, following ``/Prev``), then ``/Root`` ->
  ``/Pages`` -> ``/Count`` (objects possibly inside object streams). Every object read must sit at
  its xref offset under its own number and generation.
* TIFF: Pillow opens a file object whose reads are ranged, so it reads the header and the IFD
  chain (classic or BigTIFF, either byte order), never the strips: the frame count is Pillow's own.

Reads go through :class:`RangeReader`: aligned blocks, cached, a run of missing blocks fetched in
one request, so nearby reads coalesce. Anything this module does not fully understand (no
``startxref``, a broken xref, an encrypted file, a filter other than Flate, a ``/Count`` that is not
a positive integer below the object count, a loop, too many requests) raises :class:`Doubt`, and the
caller counts the pages the old way (whole read + PyMuPDF), so counts stay exact.
"""

from __future__ import annotations

import io
import re
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

#: Aligned block size of ranged reads; one request fetches a run of missing blocks.
BLOCK = 1024
#: The first read at each end of a document (its header; a PDF's startxref, xref and trailer).
END_READ = 4096
#: A document this small is read in one request (two ends would cost two).
SMALL = 16384
#: A PDF's ``startxref`` must lie in its last this many bytes (MuPDF's own window).
STARTXREF_WINDOW = 1024
#: Give up (and read whole) past this many requests for one document (a TIFF costs about one a
#: frame, a PDF two or three), or past a quarter of its bytes (past 4 blocks for a small one).
MAX_REQUESTS = 256
_MAX_SECTIONS = 64  # xref sections followed through /Prev
_MAX_WINDOW = 1 << 20  # largest window one object may need

PDF = "application/pdf"
TIFF = "image/tiff"


class Doubt(Exception):
    """The ranged count is not certain: count from the whole bytes instead."""


class RangeReader:
    """One object's bytes through ``read_range(start, length)``, in aligned, cached blocks.

    ``size``: the object's size (from the listing). ``requests``/``bytes_read`` count what the store
    served. A store answering short (the object shrank since it was listed) is a :class:`Doubt`."""

    def __init__(
        self,
        read_range: Callable[[int, int], bytes],
        size: int,
        block: int = BLOCK,
        max_requests: int = MAX_REQUESTS,
    ) -> None:
        self._read_range = read_range
        self.size = size
        self.block = block
        self.max_requests = max_requests
        self._blocks: dict[int, bytes] = {}
        self.failed = False  # a read raised: whatever its caller concluded, it is not the file's
        self.requests = 0
        self.bytes_read = 0

    def _fetch(self, first: int, last: int) -> None:
        """Blocks ``first``..``last`` (inclusive) in one request."""
        start = first * self.block
        length = min(self.size, (last + 1) * self.block) - start
        if self.requests >= self.max_requests or self.bytes_read + length > max(self.size // 4, 4 * END_READ):
            self.failed = True
            raise Doubt("too many requests or bytes")
        self.failed = True  # until the store answered in full
        data = self._read_range(start, length)
        self.requests += 1
        self.bytes_read += len(data)
        if len(data) != length:
            raise Doubt("short read")
        self.failed = False
        for b in range(first, last + 1):
            off = (b - first) * self.block
            self._blocks[b] = data[off : off + self.block]

    def get(self, start: int, end: int) -> bytes:
        """Bytes ``[start, end)`` clipped to the object."""
        start, end = max(0, start), min(self.size, end)
        if end <= start:
            return b""
        first, last = start // self.block, (end - 1) // self.block
        b = first
        while b <= last:
            if b in self._blocks:
                b += 1
                continue
            run_end = b
            while run_end + 1 <= last and run_end + 1 not in self._blocks:
                run_end += 1
            self._fetch(b, run_end)
            b = run_end + 1
        data = b"".join(self._blocks[i] for i in range(first, last + 1))
        return data[start - first * self.block : end - first * self.block]


class RangeFile(io.RawIOBase):
    """A read-only, seekable file object over a :class:`RangeReader` (for Pillow)."""

    def __init__(self, reader: RangeReader) -> None:
        self._r = reader
        self._pos = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def seek(self, offset: int, whence: int = 0) -> int:
        base = {0: 0, 1: self._pos, 2: self._r.size}[whence]
        self._pos = max(0, base + offset)
        return self._pos

    def tell(self) -> int:
        return self._pos

    def read(self, n: int | None = -1) -> bytes:
        end = self._r.size if n is None or n < 0 else self._pos + n
        data = self._r.get(self._pos, end)
        self._pos += len(data)
        return data

    def readinto(self, buf: Any) -> int:
        data = self.read(len(buf))
        buf[: len(data)] = data
        return len(data)


# --------------------------------------------------------------------------------------------
# PDF objects


class Name(str):
    """A PDF name (without its slash)."""


@dataclass(frozen=True)
class Ref:
    num: int
    gen: int


@dataclass
class Stream:
    dict: dict[str, Any]
    data_start: int  # absolute offset of the stream's first byte


class _More(Exception):
    """The window ended inside a token: read a larger one."""


_WS = b"\x00\t\n\x0c\r "
_DELIM = b"()<>[]{}/%"
_NUM = re.compile(rb"[+-]?(\d+\.?\d*|\.\d+)")
_INT = re.compile(rb"\d+")
_OBJ_HEADER = re.compile(rb"(\d+)\s+(\d+)\s+obj")
_XREF_SUBSECTION = re.compile(rb"(\d+)[ \t]+(\d+)[ \t]*\r?\n?")
_XREF_ENTRY = re.compile(rb"(\d{10}) (\d{5}) ([nf])[ \r\n]{2}")
_STARTXREF = re.compile(rb"startxref[\x00\t\n\x0c\r ]+(\d+)")


def _skip_ws(d: bytes, i: int) -> int:
    n = len(d)
    while True:
        while i < n and d[i] in _WS:
            i += 1
        if i < n and d[i] == 0x25:  # % comment
            while i < n and d[i] not in b"\r\n":
                i += 1
            if i >= n:
                raise _More
            continue
        if i >= n:
            raise _More
        return i


def _regular_end(d: bytes, i: int) -> int:
    n = len(d)
    while i < n and d[i] not in _WS and d[i] not in _DELIM:
        i += 1
    if i >= n:
        raise _More
    return i


def _parse(d: bytes, i: int, depth: int = 0) -> tuple[Any, int]:
    """One PDF object of ``d`` at ``i``: (value, index after it)."""
    if depth > 32:
        raise Doubt("nesting too deep")
    i = _skip_ws(d, i)
    c = d[i : i + 2]
    if c == b"<<":
        out: dict[str, Any] = {}
        i += 2
        while True:
            i = _skip_ws(d, i)
            if d[i : i + 2] == b">>":
                return out, i + 2
            if len(d) - i < 2:
                raise _More
            key, i = _parse(d, i, depth + 1)
            if not isinstance(key, Name):
                raise Doubt("dictionary key is not a name")
            out[str(key)], i = _parse(d, i, depth + 1)
    ch = d[i]
    if ch == 0x5B:  # [
        items: list[Any] = []
        i += 1
        while True:
            i = _skip_ws(d, i)
            if d[i] == 0x5D:
                return items, i + 1
            v, i = _parse(d, i, depth + 1)
            items.append(v)
    if ch == 0x2F:  # /name
        end = _regular_end(d, i + 1)
        raw = d[i + 1 : end]
        if b"#" in raw:
            raw = re.sub(rb"#([0-9A-Fa-f]{2})", lambda m: bytes([int(m.group(1), 16)]), raw)
        return Name(raw.decode("latin-1")), end
    if ch == 0x28:  # (literal string)
        level, j, n = 0, i, len(d)
        while j < n:
            b = d[j]
            if b == 0x5C:
                j += 2
                continue
            if b == 0x28:
                level += 1
            elif b == 0x29:
                level -= 1
                if level == 0:
                    return d[i + 1 : j], j + 1
            j += 1
        raise _More
    if ch == 0x3C:  # <hex>
        end = d.find(b">", i)
        if end < 0:
            raise _More
        return d[i + 1 : end], end + 1
    if ch in b"+-.0123456789":
        m = _NUM.match(d, i)
        if not m:
            raise Doubt("bad number")
        end = m.end()
        if end >= len(d):
            raise _More
        tok = m.group(0)
        if b"." in tok:
            return float(tok), end
        num = int(tok)
        # "num gen R": a reference
        try:
            j = _skip_ws(d, end)
            m2 = _INT.match(d, j)
            if m2 and not tok.startswith((b"+", b"-")):
                k = _skip_ws(d, m2.end())
                if d[k : k + 1] == b"R" and (k + 1 >= len(d) or d[k + 1] in _WS or d[k + 1] in _DELIM):
                    if k + 1 >= len(d):
                        raise _More
                    return Ref(num, int(m2.group(0))), k + 1
        except _More:
            if len(d) < _MAX_WINDOW:
                raise
        return num, end
    end = _regular_end(d, i)
    word = d[i:end]
    if word == b"true":
        return True, end
    if word == b"false":
        return False, end
    if word == b"null":
        return None, end
    raise Doubt("unexpected keyword")


class _Pdf:
    def __init__(self, reader: RangeReader) -> None:
        self.r = reader
        self.xref: dict[int, tuple[Any, ...]] = {}
        self.trailer: dict[str, Any] | None = None
        self._objstms: dict[int, tuple[list[tuple[int, int]], bytes]] = {}

    # -- reading -----------------------------------------------------------------------------

    def parse_at(self, pos: int, fn: Callable[[bytes], tuple[Any, int]]) -> tuple[Any, int]:
        """``fn(window)`` on a window starting at ``pos``, widened until it suffices."""
        width = 1024
        while True:
            d = self.r.get(pos, pos + width)
            try:
                return fn(d)
            except (_More, IndexError):
                if pos + width >= self.r.size or width >= _MAX_WINDOW:
                    raise Doubt("object runs past the end") from None
                width *= 4

    def indirect(self, pos: int, num: int | None = None, gen: int | None = None) -> Any:
        """The object ``num gen obj`` at ``pos``: a value, or a :class:`Stream`."""

        def fn(d: bytes) -> tuple[Any, int]:
            m = _OBJ_HEADER.match(d, _skip_ws(d, 0))
            if not m:
                raise Doubt("no object header")
            if num is not None and (int(m.group(1)), int(m.group(2))) != (num, gen):
                raise Doubt("object number mismatch")
            value, i = _parse(d, m.end())
            j = _skip_ws(d, i)
            if d[j : j + 6] == b"stream":
                if not isinstance(value, dict):
                    raise Doubt("stream without a dictionary")
                j += 6
                if d[j : j + 2] == b"\r\n":
                    j += 2
                elif d[j : j + 1] in (b"\n", b"\r"):
                    j += 1
                else:
                    raise _More if j + 2 > len(d) else Doubt("bad stream keyword")
                return Stream(value, pos + j), j
            if d[j : j + 6] != b"endobj":
                if len(d) - j < 6:
                    raise _More
                raise Doubt("no endobj")
            return value, j

        value, _ = self.parse_at(pos, fn)
        return value

    def stream_data(self, s: Stream) -> bytes:
        length = s.dict.get("Length")
        if isinstance(length, Ref):
            length = self.get(length.num, length.gen, allow_compressed=False)
        if not isinstance(length, int) or isinstance(length, bool) or length < 0:
            raise Doubt("bad stream length")
        raw = self.r.get(s.data_start, s.data_start + length + 32)
        tail = raw[length:].lstrip(_WS)
        if len(raw) < length or not tail.startswith(b"endstream"):
            raise Doubt("stream length does not reach endstream")
        raw = raw[:length]
        flt = s.dict.get("Filter")
        parms = s.dict.get("DecodeParms")
        if isinstance(flt, list):
            if len(flt) > 1:
                raise Doubt("filter chain")
            flt = flt[0] if flt else None
            parms = parms[0] if isinstance(parms, list) and parms else parms
        if flt is None:
            return raw
        if flt not in ("FlateDecode", "Fl"):
            raise Doubt("unsupported filter")
        try:
            data = zlib.decompress(raw)
        except zlib.error:
            raise Doubt("bad flate data") from None
        return _unpredict(data, parms if isinstance(parms, dict) else {})

    def get(self, num: int, gen: int = 0, allow_compressed: bool = True) -> Any:
        entry = self.xref.get(num)
        if entry is None or entry[0] == "f":
            raise Doubt("object not in the xref")
        if entry[0] == "n":
            if entry[2] != gen:
                raise Doubt("generation mismatch")
            return self.indirect(entry[1], num, gen)
        if not allow_compressed or gen != 0:
            raise Doubt("compressed object where a direct one is needed")
        pairs, data = self._objstm(entry[1])
        idx = entry[2]
        if not 0 <= idx < len(pairs) or pairs[idx][0] != num:
            raise Doubt("object stream index mismatch")
        value, _ = _parse(data + b" ", pairs[idx][1])
        if isinstance(value, Ref):
            raise Doubt("reference as a whole object")
        return value

    def _objstm(self, num: int) -> tuple[list[tuple[int, int]], bytes]:
        if num in self._objstms:
            return self._objstms[num]
        entry = self.xref.get(num)
        if entry is None or entry[0] != "n":
            raise Doubt("object stream not found")
        s = self.indirect(entry[1], num, entry[2])
        if not isinstance(s, Stream) or s.dict.get("Type") != "ObjStm":
            raise Doubt("not an object stream")
        data = self.stream_data(s)
        n, first = s.dict.get("N"), s.dict.get("First")
        if not isinstance(n, int) or not isinstance(first, int) or n < 0 or first < 0:
            raise Doubt("bad object stream header")
        head = data[:first].split()
        if len(head) < 2 * n:
            raise Doubt("short object stream header")
        try:
            pairs = [(int(head[2 * k]), first + int(head[2 * k + 1])) for k in range(n)]
        except ValueError:
            raise Doubt("bad object stream header") from None
        self._objstms[num] = (pairs, data)
        return pairs, data

    def resolve(self, v: Any) -> Any:
        seen = 0
        while isinstance(v, Ref):
            seen += 1
            if seen > 8:
                raise Doubt("reference chain")
            v = self.get(v.num, v.gen)
        return v

    # -- cross-reference sections ---------------------------------------------------------------

    def _add(self, num: int, entry: tuple[Any, ...]) -> None:
        self.xref.setdefault(num, entry)  # newest section first: older ones never override

    def read_xref(self, start: int) -> None:
        seen: set[int] = set()
        pos: Any = start
        sections = 0
        while pos is not None:
            if not isinstance(pos, int) or isinstance(pos, bool) or not 0 <= pos < self.r.size or pos in seen:
                raise Doubt("bad or looping /Prev")
            seen.add(pos)
            sections += 1
            if sections > _MAX_SECTIONS:
                raise Doubt("too many xref sections")
            head = self.r.get(pos, pos + 4)
            if head == b"xref":
                trailer = self._xref_table(pos)
                stm = trailer.get("XRefStm")
                if stm is not None:
                    if not isinstance(stm, int) or stm in seen:
                        raise Doubt("bad /XRefStm")
                    seen.add(stm)
                    self._xref_stream(stm)
            else:
                trailer = self._xref_stream(pos)
            if self.trailer is None:
                self.trailer = trailer
            pos = trailer.get("Prev")

    def _xref_table(self, pos: int) -> dict[str, Any]:
        def fn(d: bytes) -> tuple[Any, int]:
            i = 4
            rows: list[tuple[int, tuple[Any, ...]]] = []
            while True:
                i = _skip_ws(d, i)
                if d[i : i + 7] == b"trailer":
                    trailer, j = _parse(d, i + 7)
                    if not isinstance(trailer, dict):
                        raise Doubt("trailer is not a dictionary")
                    return (rows, trailer), j
                m = _XREF_SUBSECTION.match(d, i)
                if not m:
                    if len(d) - i < 8:
                        raise _More
                    raise Doubt("bad xref subsection")
                first, count = int(m.group(1)), int(m.group(2))
                i = m.end()
                if count > 10_000_000:
                    raise Doubt("absurd xref subsection")
                for k in range(count):
                    chunk = d[i : i + 20]
                    if len(chunk) < 20:
                        raise _More
                    e = _XREF_ENTRY.match(chunk)
                    if not e:
                        raise Doubt("bad xref entry")
                    if e.group(3) == b"n":
                        rows.append((first + k, ("n", int(e.group(1)), int(e.group(2)))))
                    else:
                        rows.append((first + k, ("f",)))
                    i += 20

        (rows, trailer), _ = self.parse_at(pos, fn)
        for num, entry in rows:
            self._add(num, entry)
        return trailer  # type: ignore[no-any-return]

    def _xref_stream(self, pos: int) -> dict[str, Any]:
        s = self.indirect(pos)
        if not isinstance(s, Stream) or s.dict.get("Type") != "XRef":
            raise Doubt("no xref at startxref")
        w, size = s.dict.get("W"), s.dict.get("Size")
        if (
            not isinstance(w, list)
            or len(w) != 3
            or not all(isinstance(x, int) and 0 <= x <= 8 for x in w)
            or not isinstance(size, int)
        ):
            raise Doubt("bad xref stream /W or /Size")
        index = s.dict.get("Index", [0, size])
        if not isinstance(index, list) or len(index) % 2 or not all(isinstance(x, int) for x in index):
            raise Doubt("bad xref stream /Index")
        data = self.stream_data(s)
        width = sum(w)
        if width == 0:
            raise Doubt("empty xref entries")
        off = 0
        for k in range(0, len(index), 2):
            first, count = index[k], index[k + 1]
            if off + count * width > len(data):
                raise Doubt("xref stream too short")
            for j in range(count):
                f = [int.from_bytes(data[off + sum(w[:c]) : off + sum(w[: c + 1])], "big") for c in range(3)]
                kind = f[0] if w[0] else 1
                off += width
                if kind == 0:
                    self._add(first + j, ("f",))
                elif kind == 1:
                    self._add(first + j, ("n", f[1], f[2]))
                elif kind == 2:
                    self._add(first + j, ("c", f[1], f[2]))
                else:
                    raise Doubt("unknown xref entry type")
        return s.dict


def _unpredict(data: bytes, parms: dict[str, Any]) -> bytes:
    predictor = parms.get("Predictor", 1)
    if predictor in (None, 1):
        return data
    if not isinstance(predictor, int) or not 10 <= predictor <= 15:
        raise Doubt("unsupported predictor")
    if parms.get("Colors", 1) != 1 or parms.get("BitsPerComponent", 8) != 8:
        raise Doubt("unsupported predictor parameters")
    cols = parms.get("Columns", 1)
    if not isinstance(cols, int) or cols < 1:
        raise Doubt("bad /Columns")
    out = bytearray()
    prev = bytearray(cols)
    row_len = cols + 1
    if len(data) % row_len:
        raise Doubt("predicted data not whole rows")
    for r in range(0, len(data), row_len):
        kind, row = data[r], bytearray(data[r + 1 : r + row_len])
        if kind == 0:
            pass
        elif kind == 1:
            for k in range(1, cols):
                row[k] = (row[k] + row[k - 1]) & 0xFF
        elif kind == 2:
            for k in range(cols):
                row[k] = (row[k] + prev[k]) & 0xFF
        elif kind == 3:
            for k in range(cols):
                left = row[k - 1] if k else 0
                row[k] = (row[k] + ((left + prev[k]) >> 1)) & 0xFF
        elif kind == 4:
            for k in range(cols):
                a = row[k - 1] if k else 0
                b, c = prev[k], prev[k - 1] if k else 0
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                row[k] = (row[k] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 0xFF
        else:
            raise Doubt("bad PNG predictor row")
        out += row
        prev = row
    return bytes(out)


def _pdf_not_truncated(tail: bytes) -> bool:
    """``render._pdf_looks_truncated`` is False for the whole file, decided on its tail alone:
    the tail's last ``%%EOF`` comes after every object marker in the tail."""
    eof = tail.rfind(b"%%EOF")
    last_object = max(tail.rfind(b"endobj"), tail.rfind(b" obj"), tail.rfind(b"stream"))
    return eof >= 0 and eof > last_object


def pdf_page_count(reader: RangeReader) -> int:
    """The page count MuPDF reports for the PDF behind ``reader``; :class:`Doubt` if unsure."""
    size = reader.size
    tail = reader.get(size - max(END_READ, STARTXREF_WINDOW), size)
    if not _pdf_not_truncated(tail):
        raise Doubt("looks truncated")
    window = tail[-STARTXREF_WINDOW:]
    at = window.rfind(b"startxref")
    if at < 0:
        raise Doubt("no startxref")
    m = _STARTXREF.match(window, at)
    if not m:
        raise Doubt("bad startxref")
    pdf = _Pdf(reader)
    pdf.read_xref(int(m.group(1)))
    trailer = pdf.trailer or {}
    if "Encrypt" in trailer:
        raise Doubt("encrypted")
    root = pdf.resolve(trailer.get("Root"))
    if not isinstance(root, dict):
        raise Doubt("no /Root")
    pages = pdf.resolve(root.get("Pages"))
    if not isinstance(pages, dict):
        raise Doubt("no /Pages")
    count = pdf.resolve(pages.get("Count"))
    if not isinstance(count, int) or isinstance(count, bool) or count < 1:
        raise Doubt("/Count is not a positive integer")
    # a tree cannot hold more pages than the file has objects (MuPDF refuses such a /Count)
    objects = max(pdf.xref) + 1 if pdf.xref else 0
    if count >= objects:
        raise Doubt("/Count above the object count")
    # PyMuPDF reads /Info and the outline when it opens a file, and MuPDF rebuilds the xref of a
    # file whose object is not where the xref says: those must be where it says, too
    for extra in (trailer.get("Info"), root.get("Outlines")):
        if extra is not None and not isinstance(pdf.resolve(extra), dict | None):
            raise Doubt("/Info or /Outlines is not a dictionary")
    return count


def tiff_frame_count(reader: RangeReader) -> int:
    """Pillow's frame count of the TIFF behind ``reader`` (the same checks as
    :func:`render.count_pages`: the decompression-bomb limit); :class:`Doubt` where Pillow fails."""
    from airflow_provider_deepocr.core.render import RenderLimits, _bomb_limit, pillow_open

    limits = RenderLimits(max_pages=10**9)
    try:
        img = pillow_open(io.BufferedReader(RangeFile(reader), buffer_size=512), limits)
        bomb = _bomb_limit(limits)
        try:
            w, h = img.size
            if bomb is not None and w * h > bomb:
                raise Doubt("over the bomb limit")
            return max(1, int(getattr(img, "n_frames", 1) or 1))
        finally:
            img.close()
    except Doubt:
        raise
    except Exception:
        if reader.failed:
            raise Doubt("a ranged read failed") from None
        return 1  # Pillow refuses the file itself: count_pages fails alike, counted 1


def ranged_page_count(read_range: Callable[[int, int], bytes], size: int) -> tuple[int, RangeReader]:
    """The page count of a document of ``size`` bytes read through ``read_range(start, length)``,
    exactly as :func:`shards.count_pages_cheap` counts its whole bytes; raises :class:`Doubt` when
    unsure. Returns the count and the reader (its ``requests`` and ``bytes_read``)."""
    reader = RangeReader(read_range, size)
    from airflow_provider_deepocr.core.render import detect_media_type

    if size <= SMALL:
        reader.get(0, size)  # one request for all of it: cheaper than two of its ends
    head = reader.get(0, END_READ)
    try:
        media_type = detect_media_type(head[:1024])
    except Exception:
        return 1, reader  # empty or unrecognised: count_pages fails, counted 1
    if media_type == PDF:
        return pdf_page_count(reader), reader
    if media_type == TIFF:
        return tiff_frame_count(reader), reader
    return 1, reader  # another image type (one page) or an unsupported type (fails, counted 1)
