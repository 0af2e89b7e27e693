"""Where a job goes and how it gets there: the dispatcher (delivery order, retries, probes), the pure
routing rule (router.py) and peer health with hysteresis (health.py)."""
