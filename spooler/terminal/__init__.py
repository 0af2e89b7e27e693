"""The device terminal: the web page and JSON API where users log in at the printer and release or
delete their held jobs (pull print). `resource` serves HTTP, `sessions` keeps who is logged in,
`pullprint` decides what a user may see and release; the login itself is spooler.login's."""

from spooler.terminal.resource import TerminalResource, TerminalSite

__all__ = ["TerminalResource", "TerminalSite"]
