"""What every IPP operation module of the printer shares (operations.py, administration.py,
notifications.py): the typed IPP error, what HTTP told about a request, reading single operation
attributes, and the bare response to a request. A leaf: it knows the codec and the tables only."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from spooler.ipp.codec import Attribute, AttributeGroup, IppMessage
from spooler.ipp.server.attributes import SUPPORTED_VERSIONS
from spooler.ipp.tags import Status, Tag


class IppError(Exception):
    """An answer other than success, with the attributes to put in the unsupported group."""

    def __init__(self, status: Status, message: str, unsupported: list[Attribute] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.unsupported = unsupported or []


@dataclass
class RequestContext:
    """What HTTP told us about the request: the printer's URI as the client addressed it, its host."""

    printer_uri: str
    peer_host: str
    queue: str = "default"
    user: str | None = None  # the authenticated user; it replaced requesting-user-name in the request
    #: printer-uri-supported with uri-security-supported and uri-authentication-supported, in order.
    uris: list[tuple[str, str, str]] | None = None
    printer_name: str | None = None  # the queue's printer-name (None: the configured printer name)
    #: Why the request must be refused once it passed the request checks (a queue that does not exist).
    refusal: IppError | None = None


def _operation_attributes(message: IppMessage) -> AttributeGroup:
    group = message.operation_attributes
    assert group is not None
    return group


def _value(group: AttributeGroup | None, name: str, tags: tuple[int, ...], default: Any = None) -> Any:
    """The single value of `name` in `group`; IppError(bad-request) if it has the wrong syntax."""
    if group is None or (attribute := group.get(name)) is None:
        return default
    if len(attribute.values) != 1 or attribute.values[0].tag not in tags:
        raise IppError(Status.CLIENT_ERROR_BAD_REQUEST, f"{name} has the wrong syntax or count",
                       [attribute])  # fmt: skip
    value = attribute.values[0].value
    if isinstance(value, tuple) and attribute.values[0].tag in (Tag.NAME_WITH_LANGUAGE, Tag.TEXT_WITH_LANGUAGE):
        value = value[1]
    return value


NAME_TAGS = (Tag.NAME, Tag.NAME_WITH_LANGUAGE)


def response_for(request: IppMessage, status: Status, message: str | None = None) -> IppMessage:
    version = request.version if request.version in SUPPORTED_VERSIONS else (1, 1)
    response = IppMessage(version, int(status), request.request_id)
    group = response.add_group(Tag.OPERATION, Attribute.charset("attributes-charset", "utf-8"),
                               Attribute.language("attributes-natural-language", "en"))  # fmt: skip
    if message:
        group.add(Attribute.text("status-message", message[:255]))
    return response
