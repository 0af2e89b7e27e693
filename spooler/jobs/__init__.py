"""Jobs: the job service every front-end ends in (service.py), the printer's condition as clients see
it (condition.py), the page figures of every job (figures.py, counted by analysis.py's worker
processes), and the spool's recovery and retention (upkeep.py)."""
