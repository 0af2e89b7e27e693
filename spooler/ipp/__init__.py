"""IPP: the pure message codec (codec.py) and its tag, operation and status tables (tags.py), used by
the printer this spooler serves (server/) and by the backend that forwards to IPP printers (spooler.delivery.ipp)."""
