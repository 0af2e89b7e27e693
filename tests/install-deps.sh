#!/bin/sh
# Installs the third-party programs the tests run against (Debian/Ubuntu), as root or with sudo:
#   cups           the CUPS backends (socket, lpd) run directly by the tests
#   cups-daemon    cupsd, cups-client/cups-bsd: lp, lpr, lpadmin
#   cups-ipp-utils ipptool and its .test suites
#   netcat-openbsd nc
set -eu
packages="cups cups-daemon cups-client cups-bsd cups-ipp-utils netcat-openbsd"
missing=""
for package in $packages; do
    dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || missing="$missing $package"
done
[ -z "$missing" ] && exit 0
if [ "$(id -u)" -eq 0 ]; then sudo=""; else sudo="sudo"; fi
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends $missing
