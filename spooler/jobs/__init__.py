"""The job service every front-end ends in (service.py) and the page analysis of every job (analysis.py)."""
