"""ASCII85 content streams (every ReportLab PDF): the numpy decoder and the standard-library fallback
give the same bytes and the same refusals on one table, and the whole PDF corpus gives the expected
figures with numpy and with numpy made unimportable (a fresh machine without it)."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy  # noqa: F401 - a declared dependency: its absence is a failure here, not a skip
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from drivers.pdf import _a85_numpy, _a85_stdlib
from drivers.stats import AnalysisError

ROOT = Path(__file__).resolve().parent.parent
CORPUS = ROOT / "samples" / "corpus"
EXPECTED = json.loads((CORPUS / "expected.json").read_text())
DECODERS = [_a85_numpy, _a85_stdlib]

TABLE: list[tuple[bytes, bytes | None]] = [
    (b"87cURD]i,\"Ebo80~>", b"Hello World!"),  # PDF style: the ~> end marker
    (b"<~87cURD]i,\"Ebo80~>", b"Hello World!"),  # Adobe style
    (b"87cURD]i,\n\"Ebo80 \r\n~>", b"Hello World!"),  # white space anywhere
    (b"87cURD]i,\"Ebo80~>garbage after the end", b"Hello World!"),
    (b"87cURD]i,\"Ebo80", b"Hello World!"),  # no end marker
    (b"z~>", b"\0\0\0\0"),
    (b"zz!!!!!~>", b"\0" * 12),
    (b"s8W-!~>", b"\xff\xff\xff\xff"),
    (b"!!~>", b"\0"),  # a final partial group
    (b"~>", b""),
    (b"", b""),
    (b"s8W-\"~>", None),  # overflow
    (b"87cU{~>", None),  # not an ASCII85 digit
    (b"!!z!!!~>", None),  # z inside a group
    (b"u~>", None),  # a lone final digit that overflows
]


@pytest.mark.parametrize("decode", DECODERS, ids=lambda f: f.__name__)
@pytest.mark.parametrize(("encoded", "decoded"), TABLE)
def test_both_decoders_on_one_table(decode, encoded: bytes, decoded: bytes | None) -> None:  # type: ignore[no-untyped-def]
    if decoded is None:
        with pytest.raises(AnalysisError, match="bad ASCII85"):
            decode(encoded)
    else:
        assert decode(encoded) == decoded


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=300), st.booleans())
def test_both_decoders_agree_with_the_encoder(data: bytes, adobe: bool) -> None:
    encoded = base64.a85encode(data, adobe=adobe, wrapcol=64 if adobe else 0)
    encoded = encoded if adobe else encoded + b"~>"
    assert _a85_numpy(encoded) == _a85_stdlib(encoded) == data


PDFS = sorted(name for name, entry in EXPECTED.items() if entry["format"] == "application/pdf")
_RUN_CORPUS = """
import json, sys
from pathlib import Path
from drivers import analyze_file
out = {}
for name in sys.argv[2:]:
    s = analyze_file(Path(sys.argv[1]) / name)
    out[name] = {"status": s.status, "reason": s.reason, "pages": s.pages,
                 "colors": [p.color for p in s.page_info], "numpy": sys.modules.get("numpy") is not None}
print(json.dumps(out))
"""


@pytest.mark.parametrize("numpy_available", [True, False], ids=["with-numpy", "without-numpy"])
def test_pdf_corpus_with_and_without_numpy(numpy_available: bool) -> None:
    """ASCII85+Flate content streams (ReportLab) in a fresh interpreter, numpy importable or not."""
    block = "" if numpy_available else "import sys; sys.modules['numpy'] = None\n"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-c", block + _RUN_CORPUS, str(CORPUS), *PDFS], env=env,
                          capture_output=True, text=True, timeout=120, check=True)  # fmt: skip
    results = json.loads(done.stdout)
    assert any(b"/ASCII85Decode" in (CORPUS / name).read_bytes() for name in PDFS)
    for name in PDFS:
        got, expected = results[name], EXPECTED[name]
        assert got["numpy"] is numpy_available
        assert (got["status"], got["pages"]) == (expected["status"], expected["pages"]), (name, got["reason"])
        if expected["status"] == "ok":
            assert got["colors"] == expected["colors"], name
