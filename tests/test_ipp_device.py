"""The real device's own description (an ipp:// device's Get-Printer-Attributes answer): what is taken
from it, how it changes the printer's attributes and job checks, and when it is asked again."""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.task import Clock

from spooler.ipp.server.attributes import (
    DEFAULT_FORMAT,
    DOCUMENT_FORMATS,
    PrinterAttributes,
    PrinterIdentity,
    PrinterStatus,
    check_job_template,
    device_description,
)
from spooler.ipp.codec import Attribute, Value
from spooler.ipp.server.device import RETRY, DeviceDescriber
from spooler.ipp.tags import Tag

STATUS = PrinterStatus(state="idle", reasons=(), message="Idle.", accepting=True, state_changed_at=1.0,
                       queued_jobs=0, now=2.0, up_since=1.0)  # fmt: skip

#: A mono, simplex letter/legal printer that takes PDF and PWG raster (and sends what we do not use).
DEVICE_ANSWER = [
    Attribute.keyword("media-supported", "na_letter_8.5x11in", "na_legal_8.5x14in"),
    Attribute.keyword("media-default", "na_letter_8.5x11in"),
    Attribute.keyword("sides-supported", "one-sided"),
    Attribute.keyword("print-color-mode-supported", "monochrome"),
    Attribute.resolution("printer-resolution-supported", (1200, 1200, 3)),
    Attribute.range("copies-supported", (1, 99)),
    Attribute.mime("document-format-supported", "application/pdf", "image/pwg-raster", "application/x-vendor"),
    Attribute.text("printer-name", "the device's own name"),  # not ours to take
    Attribute.keyword("output-bin-default", "face-up", "face-down"),  # a default with two values: ignored
    Attribute("finishings-supported", [Value(Tag.KEYWORD, "staple")]),  # wrong syntax: ignored
]


def rendered(printer: PrinterAttributes, *names: str) -> dict[str, list[object]]:
    return {a.name: a.all for a in printer.render(STATUS, "ipp://127.0.0.1:8631/ipp/print", set(names))}


def test_only_well_formed_paper_path_attributes_are_taken() -> None:
    taken = device_description(DEVICE_ANSWER)
    assert sorted(taken) == ["copies-supported", "document-format-supported", "media-default", "media-supported",
                             "print-color-mode-supported", "printer-resolution-supported", "sides-supported"]


def test_the_device_description_replaces_the_defaults_and_stays_consistent() -> None:
    printer = PrinterAttributes(PrinterIdentity(default_media="iso_a4_210x297mm"))
    assert rendered(printer, "color-supported")["color-supported"] == [True]
    printer.describe_device(device_description(DEVICE_ANSWER))
    shown = rendered(printer, "media-supported", "media-default", "media-ready", "sides-supported", "sides-default",
                     "print-color-mode-supported", "print-color-mode-default", "color-supported",
                     "printer-resolution-default", "copies-supported", "document-format-supported", "printer-name")
    assert shown["media-supported"] == ["na_letter_8.5x11in", "na_legal_8.5x14in"]
    assert shown["media-default"] == shown["media-ready"] == ["na_letter_8.5x11in"]
    assert shown["sides-supported"] == shown["sides-default"] == ["one-sided"]
    assert shown["print-color-mode-supported"] == shown["print-color-mode-default"] == ["monochrome"]
    assert shown["color-supported"] == [False]
    assert "pages-per-minute-color" not in rendered(printer, "pages-per-minute-color")  # a colour-only figure
    assert shown["printer-resolution-default"] == [(1200, 1200, 3)]
    assert shown["copies-supported"] == [(1, 99)]
    assert shown["document-format-supported"] == ["application/pdf", "image/pwg-raster", DEFAULT_FORMAT]
    assert shown["printer-name"] == ["Spooler"]
    assert printer.document_formats == ("application/pdf", "image/pwg-raster", DEFAULT_FORMAT)


def test_jobs_are_checked_against_what_the_device_supports() -> None:
    printer = PrinterAttributes(PrinterIdentity())
    job = [Attribute.keyword("sides", "two-sided-long-edge"), Attribute.keyword("media", "iso_a4_210x297mm"),
           Attribute.keyword("print-color-mode", "color"), Attribute.integer("copies", 500)]
    assert check_job_template(job, printer.job_template_checks) == []
    printer.describe_device(device_description(DEVICE_ANSWER))
    assert [a.name for a in check_job_template(job, printer.job_template_checks)] == [
        "sides", "media", "print-color-mode", "copies"]
    fine = [Attribute.keyword("sides", "one-sided"), Attribute.keyword("media", "na_legal_8.5x14in"),
            Attribute.keyword("print-color-mode", "monochrome"), Attribute.integer("copies", 2)]
    assert check_job_template(fine, printer.job_template_checks) == []


def test_a_device_that_accepts_none_of_our_formats_leaves_ours_and_an_empty_description_restores_all() -> None:
    printer = PrinterAttributes(PrinterIdentity())
    printer.describe_device(device_description([Attribute.mime("document-format-supported", "application/x-only")]))
    assert printer.document_formats == DOCUMENT_FORMATS
    printer.describe_device(device_description(DEVICE_ANSWER))
    printer.describe_device({})
    assert rendered(printer, "sides-supported")["sides-supported"] == ["one-sided", "two-sided-long-edge",
                                                                         "two-sided-short-edge"]


class FakeDevice:
    def __init__(self) -> None:
        self.asked: list[Deferred[Any]] = []

    def __call__(self, names: Any) -> Deferred[Any]:
        assert "media-col-database" in names
        self.asked.append(Deferred())
        return self.asked[-1]


def test_the_device_is_asked_at_start_again_while_it_is_away_and_when_it_comes_back() -> None:
    clock, device = Clock(), FakeDevice()
    printer = PrinterAttributes(PrinterIdentity())
    describer = DeviceDescriber(printer, device, clock, "ipp://device/ipp/print", refresh=600, retry=RETRY)
    describer.start()
    assert len(device.asked) == 1
    device.asked[0].errback(ConnectionRefusedError("device off"))
    assert describer.reachable is False and printer.device == {}
    clock.advance(RETRY)
    assert len(device.asked) == 2
    device.asked[1].callback(DEVICE_ANSWER)  # it came back
    assert describer.answered and rendered(printer, "sides-supported")["sides-supported"] == ["one-sided"]
    clock.advance(599)
    assert len(device.asked) == 2
    clock.advance(1)  # refreshed: another model answers now
    device.asked[2].callback([Attribute.keyword("sides-supported", "one-sided", "two-sided-long-edge")])
    assert rendered(printer, "sides-supported")["sides-supported"] == ["one-sided", "two-sided-long-edge"]
    describer.stop()
    assert clock.getDelayedCalls() == []
