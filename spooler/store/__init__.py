"""The durable spool: the SQLite job database (database.py), the spool files, their fsync rules and
the free-space floor (spoolfiles.py), the one way to a job's document data (documents.py) and the
group commit of new jobs (groupcommit.py)."""
