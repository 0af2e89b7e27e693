"""Benchmark of the drivers' page counting against peers: wall time, peak RSS, throughput.

    python bench/page_count.py            # full run (a 1000-page PDF, a ~200 MB PDF, PS, PCL, raster)
    python bench/page_count.py --quick    # smaller files, 3 runs
    python bench/page_count.py --json     # figures as one JSON object on stdout

PostScript is counted by running it in Ghostscript: its case measures the drivers next to the same
gs ink_cov render alone, in the same run (the ratio is printed at the end).

Every measurement is a fresh process (interpreter start included), timed from spawn to exit, with
peak RSS from wait4(); "in-process" is the analysis alone (interpreter and imports excluded). Medians
of --runs runs. Files are generated in a temporary folder under --tmp and removed at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import zlib
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

GS_ALONE = "gs ink_cov alone"

REGEX_COUNTER = (
    "import mmap,re,sys\n"
    "f=open(sys.argv[1],'rb');m=mmap.mmap(f.fileno(),0,access=mmap.ACCESS_READ)\n"
    "print(len(re.findall(rb'/Type\\s*/Page[/>\\s]',m)))\n"
)


def run_process(command: list[str]) -> tuple[float, float, str]:
    """(wall seconds, peak RSS in MB, stdout) of one child process."""
    started = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                               env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert process.stdout is not None
    output = process.stdout.read().decode(errors="replace")
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    return time.perf_counter() - started, usage.ru_maxrss / 1024, output


def measure(command: list[str], runs: int) -> dict[str, Any]:
    results = [run_process(command) for _ in range(runs)]
    return {"seconds": statistics.median(r[0] for r in results),
            "rss_mb": statistics.median(r[1] for r in results),
            "output": results[-1][2].strip()[:80]}


def in_process(path: Path, runs: int) -> dict[str, Any]:
    """Median time of analyze_file on `path` in this process (after one warm-up)."""
    from drivers import Limits, analyze_file

    times = []
    stats = analyze_file(path)
    for _ in range(runs):
        started = time.perf_counter()
        stats = analyze_file(path)
        times.append(time.perf_counter() - started)
    assert stats is not None
    seconds = statistics.median(times)
    count_only = []
    for _ in range(runs):
        started = time.perf_counter()
        analyze_file(path, limits=Limits(color=False))
        count_only.append(time.perf_counter() - started)
    return {"seconds": seconds, "count_only_seconds": statistics.median(count_only), "mb_per_s": path.stat().st_size / 1e6 / seconds,
            "pages": stats.pages, "status": stats.status, "reason": stats.reason,
            "color_pages": stats.color_pages, "mono_pages": stats.mono_pages}


# -- test files ------------------------------------------------------------------------------------


def make_text_pdf(path: Path, pages: int) -> None:
    from reportlab.pdfgen import canvas

    c = canvas.Canvas(str(path))
    for n in range(pages):
        for line in range(40):
            if n % 10 == 0 and line == 0:
                c.setFillColorRGB(0.8, 0.1, 0.1)
            c.drawString(72, 780 - line * 18, f"Page {n + 1} line {line + 1}: the quick brown fox jumps")
            c.setFillColorRGB(0, 0, 0)
        c.showPage()
    c.save()


def make_big_pdf(path: Path, pages: int, image_bytes: int) -> None:
    """Pages each holding one noise image: odd pages colour RGB, even pages grey stored in RGB."""
    side = int((image_bytes / 3) ** 0.5)
    rng = random.Random(7)
    offsets: dict[int, int] = {}
    with open(path, "wb") as out:
        def obj(number: int, body: bytes) -> None:
            offsets[number] = out.tell()
            out.write(b"%d 0 obj\n" % number + body + b"\nendobj\n")

        out.write(b"%PDF-1.7\n")
        kids = b" ".join(b"%d 0 R" % (3 + 3 * i) for i in range(pages))
        obj(1, b"<< /Type /Catalog /Pages 2 0 R >>")
        obj(2, b"<< /Type /Pages /Kids [%s] /Count %d >>" % (kids, pages))
        for i in range(pages):
            number = 3 + 3 * i
            if i % 2:
                pixels = rng.randbytes(side * side * 3)
            else:
                grey = rng.randbytes(side * side)
                pixels = _grey_rgb(grey)
            data = zlib.compress(pixels, 1)
            obj(number, b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] /Contents %d 0 R"
                        b" /Resources << /XObject << /I %d 0 R >> >> >>" % (number + 2, number + 1))
            obj(number + 1, b"<< /Type /XObject /Subtype /Image /Width %d /Height %d /ColorSpace /DeviceRGB"
                            b" /BitsPerComponent 8 /Filter /FlateDecode /Length %d >>\nstream\n"
                % (side, side, len(data)) + data + b"\nendstream")
            content = b"q 500 0 0 500 40 200 cm /I Do Q"
            obj(number + 2, b"<< /Length %d >>\nstream\n" % len(content) + content + b"\nendstream")
        xref = out.tell()
        size = 3 + 3 * pages
        out.write(b"xref\n0 %d\n0000000000 65535 f \n" % size)
        for number in range(1, size):
            out.write(b"%010d 00000 n \n" % offsets[number])
        out.write(b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (size, xref))


def _grey_rgb(grey: bytes) -> bytes:
    rgb = bytearray(len(grey) * 3)
    rgb[0::3] = grey
    rgb[1::3] = grey
    rgb[2::3] = grey
    return bytes(rgb)


def gs(device: str, source: Path, target: Path, *options: str) -> None:
    subprocess.run(["gs", "-q", "-dBATCH", "-dNOPAUSE", "-dSAFER", f"-sDEVICE={device}", *options,
                    "-o", str(target), str(source)], check=True, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL)


def generate(folder: Path, quick: bool) -> None:
    """Write the test files into `folder` (run in a child so the parent stays small)."""
    text = folder / "text1000.pdf"
    make_text_pdf(text, 1000)
    subprocess.run(["qpdf", "--object-streams=generate", str(text), str(folder / "text1000_objstm.pdf")],
                   check=True)
    make_big_pdf(folder / "big.pdf", 40 if quick else 200, 1_500_000)
    few = folder / "text100.pdf"
    make_text_pdf(few, 100)
    gs("ps2write", text, folder / "text1000.ps")
    gs("ljet4", few, folder / "text100.pcl", "-r600")
    gs("pxlmono", few, folder / "text100.pxl", "-r600")
    gs("pwgraster", few, folder / "text100.pwg", "-r150", "-dcupsColorSpace=19", "-dcupsBitsPerColor=8")
    gs("pwgraster", few, folder / "text100_mono600.pwg", "-r600")
    gs("urf", few, folder / "text100.urf", "-r150", "-dcupsColorSpace=1", "-dcupsBitsPerColor=8")


def corpus_colour() -> str:
    from drivers import analyze_file

    expected = json.loads((ROOT / "samples" / "corpus" / "expected.json").read_text())
    exact = sum(1 for name, e in expected.items()
                if [p.color for p in analyze_file(ROOT / "samples" / "corpus" / name).page_info]
                == (e["colors"] or []))
    return f"{exact}/{len(expected)}"


def child(*arguments: str) -> Any:
    """Run this script in a child process in one of its helper modes; its JSON answer."""
    done = subprocess.run([sys.executable, __file__, *arguments], check=True, capture_output=True,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    return json.loads(done.stdout)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--runs", type=int, default=0)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--tmp", default="/tmp")
    parser.add_argument("--generate", metavar="DIR", help=argparse.SUPPRESS)
    parser.add_argument("--in-process", metavar="FILE", help=argparse.SUPPRESS)
    parser.add_argument("--corpus", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    runs = args.runs or (3 if args.quick else 5)
    if args.generate:
        generate(Path(args.generate), args.quick)
        print("{}")
        return 0
    if args.in_process:
        print(json.dumps(in_process(Path(args.in_process), runs)))
        return 0
    if args.corpus:
        print(json.dumps(corpus_colour()))
        return 0
    log = sys.stderr
    for tool in ("gs", "qpdf"):
        if shutil.which(tool) is None:
            print(f"page_count: {tool} is needed (tests/install-deps.sh)", file=log)
            return 1
    folder = Path(tempfile.mkdtemp(prefix="pcb", dir=args.tmp))
    try:
        print("generating test files ...", file=log)
        child("--generate", str(folder), *(["--quick"] if args.quick else []))
        ours = [sys.executable, "-m", "drivers.analyze"]
        cases: list[tuple[str, Path, dict[str, list[str]]]] = [
            ("baseline", folder / "text100.pdf", {"python -c pass": [sys.executable, "-c", "pass"],
                                                  "python -c 'import pypdf'": [sys.executable, "-c", "import pypdf"]}),
        ]
        for label, name in (("pdf 1000 pages", "text1000.pdf"), ("pdf 1000 pages objstm", "text1000_objstm.pdf"),
                            ("pdf big", "big.pdf")):
            path = folder / name
            cases.append((label, path, {
                "drivers (pypdf, colour)": ours + [str(path)],
                "qpdf --show-npages": ["qpdf", "--show-npages", str(path)],
                "gs pdfpagecount": ["gs", "-q", "-dNODISPLAY", "-dNOSAFER", "-c",
                                    f"({path}) (r) file runpdfbegin pdfpagecount = quit"],
                "regex /Type/Page": [sys.executable, "-c", REGEX_COUNTER, str(path)],
            }))
        ps = folder / "text1000.ps"
        nodsc = folder / "text1000_nodsc.ps"  # every %% comment stripped: only running it counts pages
        nodsc.write_bytes(b"".join(line for line in ps.read_bytes().splitlines(keepends=True)
                                   if not line.startswith(b"%%")))
        for label, path in (("postscript", ps), ("postscript no DSC", nodsc)):
            cases.append((label, path, {
                "drivers (gs ink_cov)": ours + [str(path)],
                # the peer: the same Ghostscript render alone, without our prologue, limits or parsing
                GS_ALONE: ["gs", "-q", "-dSAFER", "-dBATCH", "-dNOPAUSE", "-r75", "-sDEVICE=ink_cov", "-o", "-",
                           str(path)],
                "grep -c ^%%Page:": ["grep", "-c", "^%%Page:", str(path)],
            }))
        for label, name in (("pcl5 600dpi", "text100.pcl"), ("pclxl 600dpi", "text100.pxl"),
                            ("pwg sRGB 150dpi", "text100.pwg"), ("pwg 1-bit 600dpi", "text100_mono600.pwg"),
                            ("urf sRGB 150dpi", "text100.urf")):
            cases.append((label, folder / name, {"drivers": ours + [str(folder / name)]}))
        report: dict[str, Any] = {"runs": runs, "cases": []}
        for label, path, commands in cases:
            print(f"measuring {label} ...", file=log)
            entry = {"case": label, "file_mb": round(path.stat().st_size / 1e6, 2),
                     "in_process": child("--in-process", str(path), "--runs", str(runs)),
                     "processes": {name: measure(command, runs) for name, command in commands.items()}}
            report["cases"].append(entry)
        report["corpus_colour_exact"] = child("--corpus")
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    if args.json:
        json.dump(report, sys.stdout, indent=1)
        print()
        return 0
    print(f"median of {runs} runs; process = fresh process incl. interpreter start; in-proc = analysis only")
    print(f"{'case':22} {'MB':>6} {'in-proc s':>9} {'MB/s':>7} {'pages':>5}  method: process s / peak RSS MB -> output")
    for entry in report["cases"]:
        own = entry["in_process"]
        first = True
        for name, m in entry["processes"].items():
            lead = (f"{entry['case']:22} {entry['file_mb']:6.1f} {own['seconds']:9.3f} "
                    f"{own['mb_per_s']:7.1f} {own['pages']:5}" if first else " " * 54)
            out = m["output"].splitlines()[0] if m["output"] else ""
            if name.startswith("drivers"):
                out = f"{own['status']}: colour {own['color_pages']} mono {own['mono_pages']}"
            print(f"{lead}  {name}: {m['seconds']:.3f} s / {m['rss_mb']:.0f} MB -> {out}")
            first = False
    print("in-process without colour detection (pages and sizes only): " + ", ".join(
        f"{e['case']} {e['in_process']['count_only_seconds']:.3f} s" for e in report["cases"][1:]))
    for entry in report["cases"]:
        if GS_ALONE in entry["processes"]:
            ours_s = entry["processes"]["drivers (gs ink_cov)"]["seconds"]
            gs_s = entry["processes"][GS_ALONE]["seconds"]
            print(f"{entry['case']}: drivers {ours_s:.3f} s = {ours_s / gs_s:.2f} x gs alone ({gs_s:.3f} s)")
    print(f"colour exact on the corpus: {report['corpus_colour_exact']} samples")
    return 0


if __name__ == "__main__":
    sys.exit(main())
