"""`python -m spooler`: the same entry point as the `spooler` console script."""

from spooler.cli import main

raise SystemExit(main())
