"""The reference central server: a stand-in for MyQ or PaperCut that demos and tests run, able to fail on purpose.

One process serves a print queue (IPP and LPD, a `SpoolerService` whose device is a folder), the
project's HTTP JSON API (`/api/v1/`: health, login, user sync, revocations, accounting; see
docs/central-api.md) and a control socket that switches failure modes at run time (normal, refuse,
hang, slow, error).
"""

from spooler.refserver.modes import MODES, ModeController

__all__ = ["MODES", "ModeController"]
