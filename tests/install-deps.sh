#!/bin/sh
# Installs what the spooler and its tests need from Debian/Ubuntu, as root or with sudo.
# `sh tests/install-deps.sh --runtime` installs only what the spooler itself needs:
#   python3, python3-venv  the interpreter and `python3 -m venv` (Debian's pip refuses to install
#                  outside a virtual environment: PEP 668)
#   ghostscript    gs: the page analysis runs PostScript in it (exact pages, copies and colour)
# Without --runtime, also the third-party programs the tests run against:
#   cups           the CUPS backends (socket, lpd) run directly by the tests
#   cups-daemon    cupsd, cups-client/cups-bsd: lp, lpr, lpadmin
#   cups-ipp-utils ipptool and its .test suites
#   (ghostscript)  also makes the documents ipptool's suites print (PDF, PostScript, JPEG, PWG raster)
#   cups-filters   pdftopdf & co., which CUPS runs for a driverless (-m everywhere) queue
#   netcat-openbsd nc
#   curl           sends the oversized and chunked bodies and holds the slow connections in test_e2e_web_limits
#   qpdf           bench/page_count.py's peer page counter (gs is also its peer and makes samples/corpus)
#   poppler-utils  pdftoppm and pdftotext, which render and read `spooler report --pdf` in the tests
#   avahi-daemon, dbus  ippeveprinter (in cups-ipp-utils), CUPS' reference IPP printer, refuses to start
#                  without DNS-SD: the tests run it as a device with its own dbus and avahi, limited to lo
#   chromium       the headless browser that drives the device terminal's web page (through Playwright,
#                  which uses this system browser: never `playwright install`)
#   systemd        systemd-analyze, which checks samples/systemd/spooler.service (verify, security)
set -eu
packages="python3 python3-venv ghostscript"
if [ "${1:-}" != "--runtime" ]; then
    packages="$packages cups cups-daemon cups-client cups-bsd cups-ipp-utils cups-filters netcat-openbsd curl qpdf poppler-utils avahi-daemon dbus chromium systemd"
fi
missing=""
for package in $packages; do
    dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || missing="$missing $package"
done
[ -z "$missing" ] && exit 0
if [ "$(id -u)" -eq 0 ]; then sudo=""; else sudo="sudo"; fi
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends $missing
