"""DNS-SD (mDNS, Bonjour) advertisement of the IPP Everywhere printer: `_ipp._tcp` with the `_print` subtype.

The TXT record follows the Bonjour Printing Specification and PWG 5100.14 (IPP Everywhere), and its
values are read from the printer's own Get-Printer-Attributes rendering (`printer_facts`), so that the
advertisement and the printer never disagree. `txt_record` and `build_service_info` are pure: the tests
check them as values. `DnssdAdvertiser` is the Twisted service that registers the printer with
`zeroconf` when it starts and withdraws it when it stops, with zeroconf's blocking calls in a thread.

With listen.ipps on, the same printer is also advertised as `_ipps._tcp` (with its own `_print`
subtype and TXT key TLS=1.2) on the ipps listener's port.

python-zeroconf answers PTR queries only for a ServiceInfo's own type (python-zeroconf issues #304,
#1287), so the `_print._sub._ipp._tcp.local.` pointer is added to its registry and announced here.
"""

from __future__ import annotations

import asyncio
import ipaddress
import re
import socket
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from twisted.application.service import Service
from twisted.internet.defer import Deferred, succeed
from twisted.logger import Logger
from twisted.python.failure import Failure
from zeroconf import DNSOutgoing, InterfaceChoice, IPVersion, ServiceInfo, Zeroconf, get_all_addresses
from zeroconf.const import _FLAGS_AA, _FLAGS_QR_RESPONSE

from spooler.config import DnssdConfig
from spooler.ipp.server.attributes import PrinterAttributes, PrinterStatus, base_uri_http
from spooler.ipp.codec import Attribute
from spooler.store.spoolfiles import RunInThread

log = Logger(namespace="spooler.dnssd")

SERVICE_TYPE = "_ipp._tcp.local."
SUBTYPE = "_print._sub._ipp._tcp.local."
SECURE_SERVICE_TYPE = "_ipps._tcp.local."
SECURE_SUBTYPE = "_print._sub._ipps._tcp.local."
#: The printer's resource path, without the leading slash (TXT key rp): `/ipp/print` in resource.py.
RESOURCE_PATH = "ipp/print"
#: A TXT string (key=value) holds at most 255 bytes.
MAX_TXT_STRING = 255

# PaperMax (Bonjour Printing Specification 1.2.1): the largest paper, as the smallest class that holds
# it; (width, length) in hundredths of millimetres of the class's limit.
_PAPER_CLASSES = (
    ("<legal-A4", (21000, 29700)),  # smaller than both legal and A4: within A4
    ("legal-A4", (21590, 35560)),
    ("tabloid-A3", (29700, 43180)),
    ("isoC-A2", (42000, 59400)),
)
_HOST_LABEL_CHARS = re.compile(r"[^A-Za-z0-9-]+")


@dataclass(frozen=True)
class PrinterFacts:
    """What the TXT record says about the printer, as Get-Printer-Attributes reports it."""

    make_and_model: str  # printer-make-and-model
    location: str  # printer-location
    uuid: str  # printer-uuid without "urn:uuid:"
    color: bool  # color-supported
    duplex: bool  # sides-supported has a two-sided value
    document_formats: tuple[str, ...]  # document-format-supported
    urf: tuple[str, ...]  # urf-supported
    media_sizes: tuple[tuple[int, int], ...]  # media-size-supported (x, y), hundredths of mm
    media_types: tuple[str, ...]  # media-type-supported


def printer_facts(printer: PrinterAttributes) -> PrinterFacts:
    """The facts of the printer's own attribute rendering (the values Get-Printer-Attributes returns)."""
    status = PrinterStatus(state="idle", reasons=(), message="", accepting=True, state_changed_at=0.0,
                           queued_jobs=0, now=0.0, up_since=0.0)  # fmt: skip
    attributes: dict[str, Attribute] = {str(a.name): a for a in printer.render(status, "ipp://localhost/ipp/print",
                                                                                 None)}  # fmt: skip

    def values(name: str) -> list[Any]:
        attribute = attributes.get(name)
        return attribute.all if attribute is not None else []

    sizes = []
    for members in values("media-size-supported"):
        member: dict[str, Any] = {str(m.name): m.first for m in members}
        sizes.append((int(member["x-dimension"]), int(member["y-dimension"])))
    uuid = str(values("printer-uuid")[0])
    return PrinterFacts(
        make_and_model=str(values("printer-make-and-model")[0]),
        location=str((values("printer-location") or [""])[0]),
        uuid=uuid.removeprefix("urn:uuid:"),
        color=bool(values("color-supported")[0]),
        duplex=any(str(side).startswith("two-sided") for side in values("sides-supported")),
        document_formats=tuple(str(v) for v in values("document-format-supported")),
        urf=tuple(str(v) for v in values("urf-supported")),
        media_sizes=tuple(sizes),
        media_types=tuple(str(v) for v in values("media-type-supported")),
    )


def paper_max(sizes: Iterable[tuple[int, int]]) -> str:
    """The PaperMax TXT value for the largest of the media sizes (x, y in hundredths of mm)."""
    width = max((min(x, y) for x, y in sizes), default=0)
    length = max((max(x, y) for x, y in sizes), default=0)
    for name, (max_width, max_length) in _PAPER_CLASSES:
        if width <= max_width and length <= max_length:
            return name
    return ">isoC-A2"


def printer_kind(media_types: Iterable[str]) -> str:
    """The kind TXT value (PWG 5100.14 printer-kind) from the media types."""
    types = set(media_types)
    kinds = ["document"]
    kinds += ["envelope"] if "envelope" in types else []
    kinds += ["label"] if "labels" in types else []
    return ",".join(kinds)


def _fit(key: str, value: str) -> str:
    """The value cut (at a character boundary) so that key=value fits one TXT string."""
    room = MAX_TXT_STRING - len(key.encode()) - 1
    return value.encode()[:room].decode("utf-8", "ignore")


def txt_record(config: DnssdConfig, facts: PrinterFacts, *, host: str, port: int,
               tls: bool = False) -> dict[str, str]:  # fmt: skip
    """The TXT record of the `_ipp._tcp` service (Bonjour Printing Specification, PWG 5100.14).

    `host` is the advertised mDNS host name ("NAME.local."), `port` the IPP listener's port: adminurl
    is then the printer-more-info a client gets when it asks through the advertised name. `config` is
    accepted for keys that may come from the configuration; none does yet beyond the service name.
    """
    admin_host = host.rstrip(".")
    record = {
        "txtvers": "1",
        "qtotal": "1",
        "rp": RESOURCE_PATH,
        "ty": facts.make_and_model,
        "product": f"({facts.make_and_model})",
        "note": facts.location,
        "adminurl": base_uri_http(f"ipp://{admin_host}:{port}/{RESOURCE_PATH}") + "/",
        "pdl": ",".join(facts.document_formats),
        "URF": ",".join(facts.urf) or "none",
        "UUID": facts.uuid,
        "Color": "T" if facts.color else "F",
        "Duplex": "T" if facts.duplex else "F",
        "Copies": "T",
        "PaperMax": paper_max(facts.media_sizes),
        "kind": printer_kind(facts.media_types),
        "priority": "50",
        "air": "none",
        "mopria-certified": "1.3",
    }
    if tls:  # the _ipps._tcp record (Bonjour Printing Specification: TLS, the highest version offered)
        record["TLS"] = "1.2"
    return {key: _fit(key, value) for key, value in record.items()}


def service_name(config: DnssdConfig, service_type: str = SERVICE_TYPE) -> str:
    """The fully qualified service instance name, e.g. "Spooler._ipp._tcp.local."."""
    return f"{config.name}.{service_type}"


def build_service_info(config: DnssdConfig, facts: PrinterFacts, *, host: str, port: int,
                       addresses: Sequence[str], tls: bool = False) -> ServiceInfo:  # fmt: skip
    """The zeroconf ServiceInfo of the printer (type `_ipp._tcp.local.`, or `_ipps._tcp.local.` with
    `tls`): SRV to host:port, the TXT record, A/AAAA records for the addresses. The `_print` subtype
    pointer is `subtype_info` of it."""
    service_type = SECURE_SERVICE_TYPE if tls else SERVICE_TYPE
    return ServiceInfo(
        service_type, service_name(config, service_type),
        port=port, properties=txt_record(config, facts, host=host, port=port, tls=tls),
        server=host, parsed_addresses=list(addresses),
    )  # fmt: skip


def subtype_info(info: ServiceInfo) -> ServiceInfo:
    """A copy of `info` whose type is the `_print` subtype: its PTR record is
    `_print._sub._ipp._tcp.local. -> INSTANCE._ipp._tcp.local.`, the rest is the same."""
    return ServiceInfo(
        f"_print._sub.{info.type}", info.name, port=info.port, properties=info.text, server=info.server,
        addresses=info.addresses_by_version(IPVersion.All), host_ttl=info.host_ttl, other_ttl=info.other_ttl,
    )  # fmt: skip


def default_host() -> str:
    """This machine's mDNS host name: the first label of its host name, in `.local.`."""
    label = _HOST_LABEL_CHARS.sub("-", socket.gethostname().split(".")[0]).strip("-")[:63] or "spooler"
    return f"{label}.local."


def advertised_addresses(config: DnssdConfig, listener_host: str) -> list[str]:
    """Where clients reach the printer: dnssd.interfaces, else the IPP listener's address if it is bound
    to one, else every non-loopback IPv4 address of the machine."""
    if config.interfaces:
        return list(config.interfaces)
    if _is_specific(listener_host):
        return [str(ipaddress.ip_address(listener_host))]
    found = [a for a in get_all_addresses() if not ipaddress.ip_address(a).is_loopback]
    return found or ["127.0.0.1"]


def _is_specific(host: str) -> bool:
    """Whether a listener's host is one address (not 0.0.0.0, ::, or a name)."""
    try:
        return not ipaddress.ip_address(host).is_unspecified
    except ValueError:
        return False


class ZeroconfLike(Protocol):
    """What the advertiser uses of zeroconf.Zeroconf (tests inject a fake)."""

    def register_service(self, info: Any, ttl: int | None = None, allow_name_change: bool = False) -> None: ...

    def unregister_service(self, info: Any) -> None: ...

    def close(self) -> None: ...


ZeroconfFactory = Callable[[list[str] | None], ZeroconfLike]


def real_zeroconf(interfaces: list[str] | None) -> ZeroconfLike:
    """A zeroconf.Zeroconf on the given addresses (None: every interface, IPv4)."""
    return Zeroconf(interfaces=interfaces if interfaces else InterfaceChoice.All)  # type: ignore[return-value]


class DnssdAdvertiser(Service):
    """Registers the printer with DNS-SD while it runs. A registration failure is logged, never fatal:
    clients can still use the printer's URI."""

    def __init__(self, config: DnssdConfig, printer: PrinterAttributes, listening: Callable[[], tuple[str, int]],
                 run_in_thread: RunInThread, *, zeroconf_factory: ZeroconfFactory | None = None,
                 host: str | None = None, addresses: Callable[[DnssdConfig, str], list[str]] = advertised_addresses,
                 secure_port: Callable[[], int | None] | None = None) -> None:  # fmt: skip
        self.setName("dnssd")
        self.config = config
        self._printer = printer
        self._listening = listening
        self._run_in_thread = run_in_thread
        self._zeroconf_factory = zeroconf_factory
        self._host = host or config.host
        self._addresses = addresses
        self._zeroconf: ZeroconfLike | None = None
        self._info: Any = None
        self._subtype: Any = None
        self._starting: Deferred[Any] = succeed(None)
        self._secure_port = secure_port  # the ipps listener's port, if there is one
        self._secure: list[tuple[Any, Any]] = []  # (info, subtype) of `_ipps._tcp`

    @property
    def registered_name(self) -> str | None:
        """The instance name in use (zeroconf renames it on a conflict), while registered."""
        return self._info.get_name() if self._info is not None and self._zeroconf is not None else None

    def startService(self) -> None:
        super().startService()
        listener_host, port = self._listening()
        host = self._host or default_host()
        facts = printer_facts(self._printer)
        secure_port = self._secure_port() if self._secure_port is not None else None
        self._starting = self._run_in_thread(self._register, facts, host, listener_host, port, secure_port)
        self._starting.addErrback(self._failed)

    def _register(self, facts: PrinterFacts, host: str, listener_host: str, port: int,
                  secure_port: int | None = None) -> None:  # fmt: skip
        """In a thread: open zeroconf, register the service (probing, renaming on a conflict), add the subtype."""
        addresses = self._addresses(self.config, listener_host)
        if all(ipaddress.ip_address(a).is_loopback for a in addresses):
            log.warn("DNS-SD: the IPP printer listens on {listener} only; it is advertised there, where the "
                     "network cannot see it (set listen.ipp and dnssd.interfaces)", spool_event="dnssd_loopback",
                     listener=listener_host)  # fmt: skip
        info = build_service_info(self.config, facts, host=host, port=port, addresses=addresses)
        # Multicast only where the printer is reachable: on the configured or the listener's own
        # address(es); on every interface only when the listener is on all of them.
        specific = bool(self.config.interfaces) or _is_specific(listener_host)
        factory = self._zeroconf_factory or real_zeroconf
        zeroconf = factory(list(addresses) if specific else None)
        try:
            zeroconf.register_service(info, allow_name_change=True)
        except BaseException:
            zeroconf.close()
            raise
        self._zeroconf, self._info = zeroconf, info
        self._subtype = self._add_subtype(zeroconf, info)
        if secure_port:
            secure = build_service_info(self.config, facts, host=host, port=secure_port, addresses=addresses, tls=True)
            try:
                zeroconf.register_service(secure, allow_name_change=True)
                self._secure.append((secure, self._add_subtype(zeroconf, secure)))
            except Exception as error:  # the _ipp._tcp advertisement stands
                log.warn("DNS-SD: {type} is not advertised: {error}", spool_event="dnssd_failed",
                         type=SECURE_SERVICE_TYPE, error=repr(error))  # fmt: skip
        log.info("DNS-SD: advertising {name} ({type}) at {host}:{port} on {addresses}",
                 spool_event="dnssd_registered", name=info.get_name(), type=SERVICE_TYPE, subtype=SUBTYPE,
                 host=host, port=port, addresses=addresses, uuid=facts.uuid)  # fmt: skip

    @staticmethod
    def _add_subtype(zeroconf: Any, info: Any) -> Any:
        """Answer and announce `_print._sub._ipp._tcp.local.` (zeroconf only does the service's own type)."""
        try:
            sub = subtype_info(info)
            types = zeroconf.registry.types

            def add() -> None:
                types.setdefault(sub.type, {})[sub.key] = sub

            _on_loop(zeroconf, add)
            announcement = DNSOutgoing(_FLAGS_QR_RESPONSE | _FLAGS_AA)
            announcement.add_answer_at_time(sub.dns_pointer(), 0)
            zeroconf.send(announcement)
            return sub
        except Exception as error:  # a zeroconf without these internals: the main type still works
            log.warn("DNS-SD: the {subtype} subtype is not advertised: {error}", spool_event="dnssd_subtype_failed",
                     subtype=SUBTYPE, error=repr(error))  # fmt: skip
            return None

    @staticmethod
    def _remove_subtype(zeroconf: Any, sub: Any) -> None:
        try:
            types = zeroconf.registry.types

            def remove() -> None:
                bucket = types.get(sub.type, {})
                bucket.pop(sub.key, None)
                if not bucket:
                    types.pop(sub.type, None)

            _on_loop(zeroconf, remove)
            goodbye = DNSOutgoing(_FLAGS_QR_RESPONSE | _FLAGS_AA)
            goodbye.add_answer_at_time(sub.dns_pointer(override_ttl=0), 0)
            zeroconf.send(goodbye)
        except Exception as error:
            log.warn("DNS-SD: the {subtype} subtype was not withdrawn: {error}", spool_event="dnssd_subtype_failed",
                     subtype=SUBTYPE, error=repr(error))  # fmt: skip

    def _failed(self, failure: Failure) -> None:
        log.failure("DNS-SD: the printer could not be advertised", failure, spool_event="dnssd_failed")

    def stopService(self) -> Deferred[None]:
        super().stopService()
        stopped: Deferred[None] = Deferred()

        def withdraw(_: object) -> Deferred[None]:
            return self._run_in_thread(self._unregister)

        def logged(failure: Failure) -> None:
            log.failure("DNS-SD: the advertisement could not be withdrawn", failure, spool_event="dnssd_failed")

        starting, self._starting = self._starting, succeed(None)
        starting.addBoth(withdraw).addErrback(logged).addBoth(lambda _: stopped.callback(None))
        return stopped

    def _unregister(self) -> None:
        """In a thread: withdraw the subtype and the service (goodbye packets) and close zeroconf."""
        zeroconf, info, sub = self._zeroconf, self._info, self._subtype
        self._zeroconf = self._info = self._subtype = None
        secure, self._secure = self._secure, []
        if zeroconf is None:
            return
        try:
            for secure_info, secure_sub in secure:
                if secure_sub is not None:
                    self._remove_subtype(zeroconf, secure_sub)
                zeroconf.unregister_service(secure_info)
            if sub is not None:
                self._remove_subtype(zeroconf, sub)
            zeroconf.unregister_service(info)
            log.info("DNS-SD: {name} withdrawn", spool_event="dnssd_unregistered", name=info.get_name())
        finally:
            zeroconf.close()


def _on_loop(zeroconf: Any, change: Callable[[], object]) -> None:
    """Run `change` on zeroconf's event loop (its registry is not thread-safe), or here without one."""
    loop = getattr(zeroconf, "loop", None)
    if loop is not None and loop.is_running():
        async def run() -> None:
            change()

        asyncio.run_coroutine_threadsafe(run(), loop).result(timeout=5)
    else:
        change()
