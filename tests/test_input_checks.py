"""Issue 18: the input checks' fast path (pyarrow's C++ CSV parser, block-wise UTF-8 decoding) must never accept a
file that the line-by-line scans (the csv module, the authorities that name the line) refuse."""

import bz2
import csv
import gzip
import lzma
import random

import pytest

from aepo_datasets.errors import AEPOInputError
from aepo_datasets.io import files
from aepo_datasets.io.files import _check_readable, _csv_rows_fit_the_header, _scan_csv_rows

EDGE_CASES = {
    "quoted comma": (b'a,b\n1,"x,y"\n', True),
    "quoted newline": (b'a,b\n1,"x\ny"\n', True),
    "quoted CRLF": (b'a,b\n1,"x\r\ny"\n', True),
    "doubled quotes": (b'a,b\n1,"x""y"\n', True),
    "blank lines": (b'\n\na,b\n\n1,2\n\r\n\n', True),
    "no trailing newline": (b"a,b\n1,2", True),
    "BOM": (b"\xef\xbb\xbfa,b\n1,2\n", True),
    "BOM before quoted names": (b'\xef\xbb\xbf"a","b"\n1,2\n', None),  # the csv module: '\ufeff"a"', 'b'
    "BOM before a quoted comma": (b'\xef\xbb\xbf"a,b",c\n1,2\n', False),  # pyarrow alone: 'a,b', 'c'
    "BOM alone on the first line": (b"\xef\xbb\xbf\na,b\n1,2\n", False),  # the csv module: header '\ufeff'
    "CRLF": (b"a,b\r\n1,2\r\n", True),
    "CR only": (b"a,b\r1,2\r", True),
    "NUL byte": (b"a,b\n1,2\x00\n", True),
    "quote inside a cell": (b'a,b\n1,b"c\n', True),
    "a row of one empty quoted cell": (b'a,b\n""\n', False),
    "a row of spaces": (b"a,b\n  \n", False),
    "space before a quote": (b'a,b\n1, "x,y"\n', False),
    "text after a closing quote": (b'a,b\n1,"x"y,z\n', False),
    "unterminated quote in the last cell": (b'a,b\n1,2\n3,"unterminated\n', True),
    "unterminated quote swallowing the rows after it": (b'a,b\n"x,1\n2,3\n', False),
    "lone quote at the end": (b'a,b\n1,2\n"\n', False),
}


@pytest.mark.parametrize("name", EDGE_CASES)
def test_fast_path_agrees_with_the_csv_module_on_edge_cases(tmp_path, name):
    """None: valid, but the fast path leaves it to the scan."""
    content, valid = EDGE_CASES[name]
    path = tmp_path / "d.csv"
    path.write_bytes(content)
    assert _scan_passes(path) is (valid is not False)
    if valid is None:
        assert _csv_rows_fit_the_header(path) is False
        _check_readable(path)
    elif not valid:
        assert _csv_rows_fit_the_header(path) is False
        with pytest.raises(AEPOInputError, match=r"line \d+ has \d+ fields? but the header has \d"):
            _check_readable(path)
    else:
        assert _csv_rows_fit_the_header(path) is True
        _check_readable(path)


def test_fast_path_never_accepts_what_the_scan_refuses_on_random_files(tmp_path):
    """Random files over the characters that steer a CSV parser; where pyarrow accepts, it must read the very cells
    the csv module reads (so widths and cell lengths agree too)."""
    import pyarrow.csv as pa_csv

    rng = random.Random(18)
    alphabet = ["a", "b", ",", '"', "\n", "\r", " ", "\r\n", '""', "é", "\ufeff", "\x00"]
    accepted = 0
    for i in range(400):
        width = rng.randint(1, 3)
        body = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 30)))
        path = tmp_path / f"r{i}.csv"
        bom = "\ufeff" if rng.random() < 0.2 else ""
        path.write_text(bom + ",".join("abc"[:width]) + "\n" + body, encoding="utf-8", newline="")
        if _csv_rows_fit_the_header(path):
            accepted += 1
            assert _scan_passes(path), path.read_bytes()
            table = pa_csv.read_csv(path, read_options=pa_csv.ReadOptions(autogenerate_column_names=True),
                                    parse_options=pa_csv.ParseOptions(newlines_in_values=True,
                                                                      ignore_empty_lines=True),
                                    convert_options=pa_csv.ConvertOptions(strings_can_be_null=False))
            rows = [[str(v) for v in row.values()] for row in table.to_pylist()]
            with open(path, newline="", encoding="utf-8-sig") as handle:  # pyarrow drops the BOM too
                assert rows == [row for row in csv.reader(handle) if row], path.read_bytes()
    assert 40 < accepted < 360  # both outcomes were exercised


def test_a_cell_over_the_csv_modules_field_limit_is_refused_as_before(tmp_path):
    path = tmp_path / "d.csv"
    limit = csv.field_size_limit()
    path.write_text(f"a,b\n1,{'x' * (limit - 1)}\n2,{'é' * (limit - 1)}\n")
    assert _csv_rows_fit_the_header(path) is True  # 'é' has twice as many bytes as characters
    path.write_text(f"a,b\n1,{'x' * limit}\n")
    assert _csv_rows_fit_the_header(path) is False  # one character to spare for a BOM; the scan lets it pass
    _check_readable(path)
    path.write_text(f"a,b\n1,{'x' * (limit + 1)}\n")
    assert _csv_rows_fit_the_header(path) is False
    with pytest.raises(AEPOInputError, match=r"line 2 is not valid CSV \(field larger than field limit"):
        _check_readable(path)


def test_a_row_longer_than_a_block_falls_back_to_the_scan_and_passes(tmp_path, monkeypatch):
    monkeypatch.setattr(files, "CSV_BLOCK_BYTES", 1024)
    path = tmp_path / "d.csv"
    path.write_text("a,b\n" + "".join(f'{i},"{"y" * 800}\n{"z" * 800}"\n' for i in range(3)))
    assert _csv_rows_fit_the_header(path) is False
    _check_readable(path)


@pytest.mark.parametrize("bad, column", [(b"\xe9", 5), (b"\xed\xa0\x80", 5), (b"\xc0\x80", 5), (b"\xf4\x90\x80\x80", 5),
                                         (b"\xe2\x82", 5)])
@pytest.mark.parametrize("suffix", [".jsonl", ".csv", ".jsonl.gz", ".csv.bz2", ".jsonl.xz"])
def test_invalid_utf8_is_named_by_line_whatever_the_block_size(tmp_path, monkeypatch, bad, column, suffix):
    """A block boundary inside a character is not an error; the first bad byte's line and column are named."""
    monkeypatch.setattr(files, "UTF8_BLOCK_BYTES", 7)
    good = "prompt,é€😀\n" * 3
    content = good.encode() + b'"caf' + bad + b'"\n' + good.encode()
    opener = {".gz": gzip.open, ".bz2": bz2.open, ".xz": lzma.open}.get(suffix[suffix.rindex("."):], open)
    path = tmp_path / f"d{suffix}"
    with opener(path, "wb") as handle:
        handle.write(content)
    with pytest.raises(AEPOInputError, match=rf"line 4 is not valid UTF-8 \(byte {bad[0]:#x} at column {column}\)"):
        _check_readable(path)
    assert ".csv" not in suffix or _csv_rows_fit_the_header(path) is False
    with opener(path, "wb") as handle:
        handle.write(good.encode() * 5)
    _check_readable(path)
    assert ".csv" not in suffix or _csv_rows_fit_the_header(path) is True


@pytest.mark.parametrize("suffix", [".csv.gz", ".csv.bz2", ".csv.xz"])
def test_compressed_csv_rows_are_checked(tmp_path, suffix):
    opener = {".gz": gzip.open, ".bz2": bz2.open, ".xz": lzma.open}[suffix[suffix.rindex("."):]]
    path = tmp_path / f"d{suffix}"
    with opener(path, "wb") as handle:
        handle.write(b'prompt,a,b\nq1,"x\ny",z\n')
    assert _csv_rows_fit_the_header(path) is True
    with opener(path, "wb") as handle:
        handle.write(b'prompt,a,b\nq1,"x\ny",z\nq2,only\n')
    with pytest.raises(AEPOInputError, match="line 4 has 2 fields but the header has 3"):
        _check_readable(path)


@pytest.mark.parametrize("suffix", [".csv.gz", ".jsonl.gz", ".jsonl.bz2", ".jsonl.xz"])
def test_a_compressed_file_cut_short_or_not_compressed_is_one_line(tmp_path, suffix):
    compress = {".gz": gzip.compress, ".bz2": bz2.compress, ".xz": lzma.compress}[suffix[suffix.rindex("."):]]
    rows = "prompt,a\n" + "".join(f"q{i},{'x' * 40}\n" for i in range(3000)) if ".csv" in suffix else \
        "".join(f'{{"prompt": "q{i}", "a": "{"x" * 40}"}}\n' for i in range(3000))
    whole = compress(rows.encode())
    for name, content in (("cut", whole[: len(whole) // 2]), ("plain", rows.encode())):
        path = tmp_path / f"{name}{suffix}"
        path.write_bytes(content)
        with pytest.raises(AEPOInputError, match=r"^Cannot read input file .*It may be cut short or corrupt: "
                                                 r"download or compress it again\.$"):
            _check_readable(path)


def test_arrow_and_python_agree_on_what_is_utf8():
    """The CSV fast path leaves UTF-8 to pyarrow's string conversion: random byte strings over lead, continuation,
    surrogate, overlong and out-of-range bytes must be valid for both or for neither."""
    import pyarrow as pa

    rng = random.Random(18)
    pieces = [b"a", b"\x80", b"\xbf", b"\xc0", b"\xc2", b"\xdf", b"\xe0", b"\xed", b"\xa0", b"\xef", b"\xf0",
              b"\xf4", b"\x90", b"\x8f", b"\xf5", b"\xff", "é".encode(), "€".encode(), "😀".encode()]
    valid = 0
    for _ in range(20000):
        data = b"".join(rng.choice(pieces) for _ in range(rng.randint(1, 6)))
        try:
            data.decode("utf-8")
            python = True
        except UnicodeDecodeError:
            python = False
        try:
            pa.array([data], pa.binary()).cast(pa.string())
            arrow = True
        except pa.ArrowInvalid:
            arrow = False
        assert arrow is python, data
        valid += python
    assert 1000 < valid < 19000


def _scan_passes(path) -> bool:
    try:
        _scan_csv_rows(path)
    except AEPOInputError:
        return False
    return True
