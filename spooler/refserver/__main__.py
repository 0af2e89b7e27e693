"""`python -m spooler.refserver`: the same entry point as the `spooler-refserver` console script."""

from spooler.refserver.cli import main

raise SystemExit(main())
