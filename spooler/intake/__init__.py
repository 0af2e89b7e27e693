"""Intake: the raw (port 9100) and LPD front-ends and what they share; each turns a connection into
documents handed to a job sink (the job service), and holds no policy. IPP's front-end is spooler.ipp.server."""
