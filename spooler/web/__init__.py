"""The plumbing of the spooler's JSON-over-HTTP servers (the admin API, the device terminal, the login
share endpoint, the reference central server) and of the IPP listener's connections: `LimitedSite`
(body cap before buffering, header deadline, idle timeout, connection and per-address caps with
idle-first eviction, peer admission, no access log), `JsonResource` with its typed `ApiError`, and
`read_capped` for the clients' answers. spooler.web.channel says which Twisted hooks are used, and why."""

from spooler.web.channel import HttpLimits, LimitedChannel, LimitedRequest, LimitedSite, address_host
from spooler.web.client import AnswerTooLarge, read_capped
from spooler.web.resource import ApiError, JsonResource, json_bytes, read_json, request_body

__all__ = ["AnswerTooLarge", "ApiError", "HttpLimits", "JsonResource", "LimitedChannel", "LimitedRequest",
           "LimitedSite", "address_host", "json_bytes", "read_capped", "read_json", "request_body"]
