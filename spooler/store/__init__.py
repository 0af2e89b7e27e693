"""The durable spool: the SQLite job database (database.py), the spool files and their fsync rules
(spoolfiles.py) and the group commit of new jobs (groupcommit.py)."""
