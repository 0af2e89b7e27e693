"""Logins at the device (DESIGN section 5): the encrypted credential cache, online and offline login,
user sync, brute-force limits and the sharing of cache entries between the spoolers of a subnet."""

from spooler.login.service import OFFLINE_NOTICE, UNAVAILABLE_OFFLINE, LoginOutcome, LoginRefused, LoginService

__all__ = ["OFFLINE_NOTICE", "UNAVAILABLE_OFFLINE", "LoginOutcome", "LoginRefused", "LoginService"]
