"""IPP wire support: the pure message codec (codec.py) and its tag, operation and status tables (tags.py)."""
