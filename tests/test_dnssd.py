"""DNS-SD advertisement: the TXT record and ServiceInfo as values, the advertiser with a fake Zeroconf
(no multicast is ever sent), and the [dnssd] configuration."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import pytest_twisted
from twisted.internet.defer import Deferred

from conftest import run_synchronously
from spooler.ipp.server import dnssd
from spooler.config import DnssdConfig, config_from_mapping
from spooler.ipp.server.dnssd import (
    SERVICE_TYPE,
    SUBTYPE,
    DnssdAdvertiser,
    PrinterFacts,
    build_service_info,
    paper_max,
    printer_facts,
    printer_kind,
    subtype_info,
    txt_record,
)
from spooler.ipp.server.attributes import PrinterAttributes, PrinterIdentity, PrinterStatus
from spooler.model import ConfigError

UUID = "0f6b1d5e-3c1a-5b7e-9d2f-4a8c6e1b2d3f"


@pytest.fixture(autouse=True)
def no_real_zeroconf(monkeypatch: pytest.MonkeyPatch) -> None:
    """A real Zeroconf would join the multicast group and send: no test may open one."""

    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("a test opened a real Zeroconf")

    monkeypatch.setattr(dnssd, "Zeroconf", refuse)


def identity(**overrides: Any) -> PrinterIdentity:
    settings: dict[str, Any] = dict(name="Front Desk", location="Room 1", make_and_model="Acme Laser 9",
                                    uuid=UUID, color=True)  # fmt: skip
    settings.update(overrides)
    return PrinterIdentity(**settings)


def facts(**overrides: Any) -> PrinterFacts:
    return printer_facts(PrinterAttributes(identity(**overrides)))


def rendered(printer: PrinterAttributes, base_uri: str) -> dict[str, list[Any]]:
    status = PrinterStatus(state="idle", reasons=(), message="", accepting=True, state_changed_at=1.0,
                           queued_jobs=0, now=2.0, up_since=1.0)  # fmt: skip
    return {str(a.name): a.all for a in printer.render(status, base_uri, None)}


# -- the TXT record and the ServiceInfo, as values --------------------------------------------------


def test_txt_record_matches_get_printer_attributes() -> None:
    printer = PrinterAttributes(identity())
    txt = txt_record(DnssdConfig(), printer_facts(printer), host="box.local.", port=8631)
    # What a client that found the printer through DNS-SD gets from Get-Printer-Attributes.
    attributes = rendered(printer, "ipp://box.local:8631/ipp/print")
    assert txt["rp"] == "ipp/print"
    assert txt["ty"] == attributes["printer-make-and-model"][0] == "Acme Laser 9"
    assert txt["product"] == "(Acme Laser 9)"
    assert txt["note"] == attributes["printer-location"][0] == "Room 1"
    assert txt["pdl"].split(",") == attributes["document-format-supported"]
    assert txt["URF"].split(",") == attributes["urf-supported"]
    assert "urn:uuid:" + txt["UUID"] == attributes["printer-uuid"][0] == f"urn:uuid:{UUID}"
    assert txt["Color"] == "T" and attributes["color-supported"] == [True]
    assert txt["Duplex"] == "T" and "two-sided-long-edge" in attributes["sides-supported"]
    assert txt["adminurl"] == attributes["printer-more-info"][0] == "http://box.local:8631/"
    assert txt["txtvers"] == "1" and txt["qtotal"] == "1"
    assert txt["PaperMax"] == "tabloid-A3"  # iso_a3 is the largest size
    assert txt["kind"] == "document,envelope,label"
    assert txt["priority"] == "50"
    assert next(iter(txt)) == "txtvers"  # first, by convention


@pytest.mark.parametrize(
    ("overrides", "key", "expected"),
    [
        ({"color": False}, "Color", "F"),
        ({"color": True}, "Color", "T"),
        ({"location": ""}, "note", ""),
        ({"make_and_model": "Büro Drucker"}, "ty", "Büro Drucker"),
        ({"make_and_model": "x" * 127}, "product", "(" + "x" * 127 + ")"),
    ],
)
def test_txt_record_table(overrides: dict[str, Any], key: str, expected: str) -> None:
    assert txt_record(DnssdConfig(), facts(**overrides), host="h.local.", port=631)[key] == expected


def test_every_txt_string_fits_255_bytes() -> None:
    long = facts(make_and_model="é" * 127, location="€" * 127)
    txt = txt_record(DnssdConfig(), long, host="h.local.", port=631)
    for key, value in txt.items():
        assert len(key.encode()) + 1 + len(value.encode()) <= 255, key
    assert txt["ty"] == "é" * 126  # 252 bytes after "ty=" (3): whole characters only
    assert len(txt["note"].encode()) <= 250 and set(txt["note"]) == {"€"}


@pytest.mark.parametrize(
    ("sizes", "expected"),
    [
        ([(21000, 29700)], "<legal-A4"),
        ([(21590, 27940)], "legal-A4"),
        ([(21000, 29700), (21590, 35560)], "legal-A4"),
        ([(29700, 42000)], "tabloid-A3"),
        ([(27940, 43180)], "tabloid-A3"),
        ([(42000, 59400)], "isoC-A2"),
        ([(59400, 84100)], ">isoC-A2"),
        ([(42000, 29700)], "tabloid-A3"),  # landscape
    ],
)
def test_paper_max(sizes: list[tuple[int, int]], expected: str) -> None:
    assert paper_max(sizes) == expected


@pytest.mark.parametrize(
    ("types", "expected"),
    [
        (["stationery"], "document"),
        (["envelope"], "document,envelope"),
        (["labels", "envelope"], "document,envelope,label"),
    ],
)
def test_printer_kind(types: list[str], expected: str) -> None:
    assert printer_kind(types) == expected


def test_service_info_and_subtype() -> None:
    config = DnssdConfig(enabled=True, name="Front Desk")
    info = build_service_info(config, facts(), host="box.local.", port=8631, addresses=["192.0.2.10", "2001:db8::1"])
    assert info.type == SERVICE_TYPE == "_ipp._tcp.local."
    assert info.name == "Front Desk._ipp._tcp.local."
    assert info.get_name() == "Front Desk"
    assert info.server == "box.local."
    assert info.port == 8631
    assert sorted(info.parsed_addresses()) == ["192.0.2.10", "2001:db8::1"]
    assert info.decoded_properties == txt_record(config, facts(), host="box.local.", port=8631)
    assert info.dns_pointer().name == "_ipp._tcp.local."
    assert info.dns_pointer().alias == "Front Desk._ipp._tcp.local."

    sub = subtype_info(info)
    assert sub.type == SUBTYPE == "_print._sub._ipp._tcp.local."
    assert sub.dns_pointer().name == SUBTYPE
    assert sub.dns_pointer().alias == info.name
    assert sub.key == info.key and sub.port == info.port and sub.server == info.server
    assert sub.text == info.text
    assert sorted(sub.parsed_addresses()) == sorted(info.parsed_addresses())


def test_instance_name_may_hold_dots_and_unicode() -> None:
    info = build_service_info(DnssdConfig(name="Büro 2.OG"), facts(), host="h.local.", port=631,
                              addresses=["192.0.2.1"])  # fmt: skip
    assert info.get_name() == "Büro 2.OG"


@pytest.mark.parametrize(
    ("interfaces", "listener", "expected"),
    [
        (("192.0.2.7",), "0.0.0.0", ["192.0.2.7"]),
        ((), "192.0.2.9", ["192.0.2.9"]),
        ((), "127.0.0.1", ["127.0.0.1"]),
    ],
)
def test_advertised_addresses(interfaces: tuple[str, ...], listener: str, expected: list[str]) -> None:
    assert dnssd.advertised_addresses(DnssdConfig(interfaces=interfaces), listener) == expected


def test_advertised_addresses_on_a_wildcard_listener_are_the_machines(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(dnssd, "get_all_addresses", lambda: ["127.0.0.1", "192.0.2.3", "198.51.100.4"])
    assert dnssd.advertised_addresses(DnssdConfig(), "0.0.0.0") == ["192.0.2.3", "198.51.100.4"]
    assert dnssd.advertised_addresses(DnssdConfig(), "") == ["192.0.2.3", "198.51.100.4"]


def test_default_host_is_a_local_label(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(dnssd.socket, "gethostname", lambda: "print_srv.example.com")
    assert dnssd.default_host() == "print-srv.local."


# -- the advertiser, with a fake Zeroconf ------------------------------------------------------------


class FakeZeroconf:
    """Records what the advertiser asks of zeroconf; sends nothing."""

    def __init__(self, interfaces: list[str] | None, *, conflict: bool = False, fail: bool = False,
                 registry: bool = True) -> None:  # fmt: skip
        self.interfaces = interfaces
        self.conflict = conflict
        self.fail = fail
        self.types: dict[str, dict[str, Any]] = {}
        if registry:  # zeroconf.Zeroconf.registry.types: the service infos by type
            self.registry = SimpleNamespace(types=self.types)
        self.loop = None
        self.registered: list[Any] = []
        self.unregistered: list[Any] = []
        self.sent: list[Any] = []
        self.calls: list[str] = []
        self.closed = False

    def register_service(self, info: Any, ttl: int | None = None, allow_name_change: bool = False) -> None:
        self.calls.append("register")
        if self.fail:
            raise OSError("no multicast here")
        if self.conflict and allow_name_change:
            info.name = f"{info.get_name()}-2.{info.type}"
        self.registered.append(info)
        self.types.setdefault(info.type, {})[info.key] = info

    def unregister_service(self, info: Any) -> None:
        self.calls.append("unregister")
        self.unregistered.append(info)
        del self.types[info.type][info.key]

    def send(self, out: Any) -> None:
        self.calls.append("send")
        self.sent.append(out)

    def close(self) -> None:
        self.calls.append("close")
        self.closed = True


def advertiser(made: list[FakeZeroconf], *, run_in_thread: Any = run_synchronously, interfaces: tuple[str, ...] = (
        "192.0.2.10",), listener: str = "0.0.0.0", **fake: Any) -> DnssdAdvertiser:  # fmt: skip
    def factory(interfaces: list[str] | None) -> FakeZeroconf:
        made.append(FakeZeroconf(interfaces, **fake))
        return made[-1]

    return DnssdAdvertiser(DnssdConfig(enabled=True, name="Front Desk", interfaces=interfaces),
                           PrinterAttributes(identity()), lambda: (listener, 8631), run_in_thread,
                           zeroconf_factory=factory, host="box.local.")  # fmt: skip


@pytest.mark.parametrize(
    ("interfaces", "listener", "zeroconf_on", "advertised"),
    [
        (("192.0.2.10",), "0.0.0.0", ["192.0.2.10"], ["192.0.2.10"]),
        ((), "192.0.2.9", ["192.0.2.9"], ["192.0.2.9"]),
        ((), "0.0.0.0", None, ["198.51.100.4"]),  # every interface, the machine's addresses
    ],
)
def test_zeroconf_multicasts_where_the_printer_is_reachable(
    interfaces: tuple[str, ...], listener: str, zeroconf_on: list[str] | None, advertised: list[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    monkeypatch.setattr(dnssd, "get_all_addresses", lambda: ["127.0.0.1", "198.51.100.4"])
    made: list[FakeZeroconf] = []
    service = advertiser(made, interfaces=interfaces, listener=listener)
    service.startService()
    assert made[0].interfaces == zeroconf_on
    assert made[0].registered[0].parsed_addresses() == advertised
    service.stopService()


def pointers(fake: FakeZeroconf) -> list[tuple[str, str, int]]:
    return [(answer.name, answer.alias, answer.ttl) for out in fake.sent for answer, _ in out.answers]


def test_start_registers_the_service_and_the_subtype_and_stop_withdraws_them() -> None:
    made: list[FakeZeroconf] = []
    service = advertiser(made)
    service.startService()
    [fake] = made
    assert fake.interfaces == ["192.0.2.10"]
    [info] = fake.registered
    assert info.type == SERVICE_TYPE and info.name == "Front Desk._ipp._tcp.local."
    assert info.port == 8631 and info.server == "box.local." and info.parsed_addresses() == ["192.0.2.10"]
    assert info.decoded_properties["UUID"] == UUID
    assert service.registered_name == "Front Desk"
    [sub] = fake.registry.types[SUBTYPE].values()
    assert sub.type == SUBTYPE and sub.name == info.name
    assert pointers(fake) == [(SUBTYPE, info.name, 4500)]  # the subtype is announced

    stopped = service.stopService()
    assert stopped.called
    assert fake.unregistered == [info]
    assert SUBTYPE not in fake.registry.types
    assert pointers(fake)[-1] == (SUBTYPE, info.name, 0)  # goodbye
    assert fake.calls == ["register", "send", "send", "unregister", "close"]
    assert service.registered_name is None


def test_a_name_conflict_renames_and_the_subtype_follows() -> None:
    made: list[FakeZeroconf] = []
    service = advertiser(made, conflict=True)
    service.startService()
    [fake] = made
    assert service.registered_name == "Front Desk-2"
    [sub] = fake.registry.types[SUBTYPE].values()
    assert sub.name == "Front Desk-2._ipp._tcp.local."
    service.stopService()


def test_a_registration_failure_is_logged_not_fatal_and_zeroconf_closed() -> None:
    made: list[FakeZeroconf] = []
    service = advertiser(made, fail=True)
    service.startService()
    [fake] = made
    assert fake.closed and fake.registered == [] and service.registered_name is None
    stopped = service.stopService()
    assert stopped.called and fake.calls == ["register", "close"]


def test_stop_waits_for_a_registration_still_running_in_its_thread() -> None:
    made: list[FakeZeroconf] = []
    queued: list[tuple[Deferred[Any], Any, tuple[Any, ...]]] = []

    def deferred_thread(function: Any, *args: Any) -> Deferred[Any]:
        done: Deferred[Any] = Deferred()
        queued.append((done, function, args))
        return done

    service = advertiser(made, run_in_thread=deferred_thread)
    service.startService()
    assert made == []  # nothing ran on the reactor thread
    stopped = service.stopService()
    assert not stopped.called and len(queued) == 1
    done, function, args = queued.pop()
    done.callback(function(*args))  # the registration finishes; the withdrawal is queued next
    assert not stopped.called and len(queued) == 1
    done, function, args = queued.pop()
    done.callback(function(*args))
    assert stopped.called
    assert made[0].calls == ["register", "send", "send", "unregister", "close"]


def test_the_subtype_is_skipped_when_zeroconf_has_no_registry() -> None:
    made: list[FakeZeroconf] = []
    service = advertiser(made, registry=False)
    service.startService()
    [fake] = made
    assert len(fake.registered) == 1 and service.registered_name == "Front Desk"
    service.stopService()
    assert fake.calls == ["register", "unregister", "close"]


# -- configuration and the service tree ------------------------------------------------------------


def build(raw: dict[str, Any], tmp_path: Path) -> Any:
    return config_from_mapping(raw, base=tmp_path, state_dir=tmp_path / "state")


def test_dnssd_defaults(tmp_path: Path) -> None:
    config = build({"ipp": {"name": "Front Desk"}}, tmp_path)
    assert config.dnssd == DnssdConfig(enabled=False, name="Front Desk", interfaces=(), host=None)


def test_dnssd_values(tmp_path: Path) -> None:
    config = build({"dnssd": {"enabled": True, "name": "Büro 2.OG", "interfaces": ["192.0.2.1", "2001:DB8::1"],
                              "host": "drucker.local"}}, tmp_path)  # fmt: skip
    assert config.dnssd == DnssdConfig(enabled=True, name="Büro 2.OG", interfaces=("192.0.2.1", "2001:db8::1"),
                                       host="drucker.local.")  # fmt: skip


@pytest.mark.parametrize("host", ["drucker", "drucker.local", "drucker.local."])
def test_dnssd_host_forms(host: str, tmp_path: Path) -> None:
    assert build({"dnssd": {"host": host}}, tmp_path).dnssd.host == "drucker.local."


def test_a_long_ipp_name_is_cut_for_the_instance_name(tmp_path: Path) -> None:
    config = build({"ipp": {"name": "ü" * 100}}, tmp_path)
    assert config.dnssd.name == "ü" * 31  # 62 bytes: whole characters within 63


@pytest.mark.parametrize(
    ("section", "key"),
    [
        ({"enabled": "yes"}, "dnssd.enabled"),
        ({"name": ""}, "dnssd.name"),
        ({"name": "x" * 64}, "dnssd.name"),
        ({"name": "tab\there"}, "dnssd.name"),
        ({"interfaces": "192.0.2.1"}, "dnssd.interfaces"),
        ({"interfaces": ["10.0.0.0/8"]}, "dnssd.interfaces"),
        ({"interfaces": ["eth0"]}, "dnssd.interfaces"),
        ({"host": "two.labels.example"}, "dnssd.host"),
        ({"host": "-bad"}, "dnssd.host"),
        ({"host": 7}, "dnssd.host"),
        ({"port": 631}, "dnssd.port"),
    ],
)
def test_bad_dnssd_values_name_the_key(section: dict[str, Any], key: str, tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as error:
        build({"dnssd": section}, tmp_path)
    assert error.value.key == key


def test_dnssd_needs_the_ipp_listener(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as error:
        build({"dnssd": {"enabled": True}, "listen": {"ipp": ""}}, tmp_path)
    assert error.value.key == "dnssd.enabled"
    assert build({"dnssd": {"enabled": False}, "listen": {"ipp": ""}}, tmp_path).dnssd.enabled is False


def serve(short_tmp: Path, enabled: bool) -> Any:
    from twisted.internet import reactor

    from spooler.service import SpoolerService

    config = config_from_mapping({
        "listen": {"raw": "", "lpd": "", "ipp": "tcp:0:interface=127.0.0.1"},
        "dnssd": {"enabled": enabled, "name": "Tree Test", "host": "tree"},
        "analysis": {"enabled": False},
    }, base=short_tmp, state_dir=short_tmp / "s")  # fmt: skip
    service = SpoolerService(config, reactor, run_in_thread=run_synchronously)
    service.startService()
    return service


@pytest_twisted.ensureDeferred
async def test_disabled_means_no_advertiser_in_the_service_tree(
    short_tmp: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def refuse(interfaces: list[str] | None) -> Any:
        raise AssertionError("zeroconf must not be opened")

    monkeypatch.setattr(dnssd, "real_zeroconf", refuse)
    service = serve(short_tmp, enabled=False)
    try:
        assert "dnssd" not in [child.name for child in service]
        with pytest.raises(KeyError):
            service.getServiceNamed("dnssd")
    finally:
        await service.stopService()


@pytest_twisted.ensureDeferred
async def test_enabled_advertises_the_ipp_listeners_port_and_the_printers_uuid(
    short_tmp: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    made: list[FakeZeroconf] = []

    def factory(interfaces: list[str] | None) -> FakeZeroconf:
        made.append(FakeZeroconf(interfaces))
        return made[-1]

    monkeypatch.setattr(dnssd, "real_zeroconf", factory)
    uuids = []
    for _ in range(2):  # the printer-uuid, and so the TXT UUID, survive a restart
        service = serve(short_tmp, enabled=True)
        try:
            port = service.getServiceNamed("ipp").port.getHost().port
            [info] = made[-1].registered
            assert info.port == port != 0
            assert info.server == "tree.local."
            assert info.parsed_addresses() == ["127.0.0.1"]  # the listener's own address ...
            assert made[-1].interfaces == ["127.0.0.1"]  # ... and multicast only there
            printer = service.intake["ipp"].operations.printer
            assert info.decoded_properties["UUID"] == printer.identity.uuid
            assert info.decoded_properties["adminurl"] == f"http://tree.local:{port}/"
            uuids.append(printer.identity.uuid)
        finally:
            await service.stopService()
        assert made[-1].closed and made[-1].unregistered == [info]
    assert uuids[0] == uuids[1]


def test_the_subtype_entry_is_what_zeroconfs_own_registry_answers_from() -> None:
    """The subtype is added to zeroconf's registry index (python-zeroconf answers PTR queries only
    for a ServiceInfo's own type): check it with a real ServiceRegistry, which opens no socket."""
    from zeroconf import ServiceRegistry

    registry = ServiceRegistry()
    made: list[FakeZeroconf] = []
    service = advertiser(made)
    service.startService()
    [fake] = made
    info = fake.registered[0]
    registry.async_add(info)
    fake.registry = SimpleNamespace(types=registry.types)  # as Zeroconf.registry
    DnssdAdvertiser._add_subtype(fake, info)
    [sub] = registry.async_get_infos_type(SUBTYPE)
    assert sub.dns_pointer().name == SUBTYPE and sub.dns_pointer().alias == info.name
    assert registry.async_get_infos_type(SERVICE_TYPE) == [info]
    DnssdAdvertiser._remove_subtype(fake, sub)
    assert registry.async_get_infos_type(SUBTYPE) == []
    service.stopService()
