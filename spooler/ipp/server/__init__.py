"""The IPP printer (the IPP front-end): the HTTP resource and streaming request (resource.py), one
function per operation (operations.py), the printer's attributes (attributes.py), the real device's
description (device.py), Basic authentication and TLS (auth.py), and its DNS-SD advertisement (dnssd.py)."""
