"""Accounting: one record per finished job (records.py), its replication to the central server
(outbox.py), and the usage statistics and PDF report made from the records (report.py)."""
