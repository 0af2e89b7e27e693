"""IPP attribute rendering (pure): the IPP Everywhere printer description, job attributes, the
job-template checks, the incremental header scanner and the [ipp] configuration."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from factories import job_factory
from spooler.config import config_from_mapping
from spooler.ipp.server.attributes import (
    PrinterAttributes,
    PrinterIdentity,
    PrinterStatus,
    check_job_template,
    job_attributes,
)
from spooler.ipp.codec import Attribute, IppMessage, decode_message, encode_message, find_data_offset
from spooler.ipp.tags import Tag
from spooler.model import ConfigError, JobState

NOW = 1_700_000_000.0
URI = "ipp://localhost:8631/ipp/print"

#: The attributes ipp-everywhere.test (PWG 5100.14 5.1/5.2) and ipp-2.0.test (PWG 5100.12 6.2) require.
REQUIRED = """
charset-configured charset-supported compression-supported document-format-default document-format-supported
generated-natural-language-supported ipp-versions-supported natural-language-configured pdl-override-supported
printer-is-accepting-jobs printer-name printer-state printer-state-reasons printer-up-time printer-uri-supported
queued-job-count uri-authentication-supported uri-security-supported operations-supported
color-supported copies-default copies-supported finishings-default finishings-supported media-default
media-supported orientation-requested-default orientation-requested-supported output-bin-default
output-bin-supported print-quality-default print-quality-supported printer-resolution-default
printer-resolution-supported sides-default sides-supported pages-per-minute printer-info printer-location
printer-make-and-model printer-more-info identify-actions-default identify-actions-supported
ipp-features-supported job-creation-attributes-supported job-ids-supported preferred-attributes-supported
media-bottom-margin-supported media-left-margin-supported media-right-margin-supported media-top-margin-supported
media-col-database media-col-ready media-ready media-size-supported media-source-supported media-type-supported
multiple-document-jobs-supported multiple-operation-time-out multiple-operation-time-out-action
overrides-supported print-color-mode-default print-color-mode-supported print-content-optimize-default
print-content-optimize-supported print-rendering-intent-default print-rendering-intent-supported
printer-config-change-date-time printer-config-change-time printer-device-id printer-geo-location
printer-get-attributes-supported printer-icons printer-organization printer-organizational-unit
printer-state-change-date-time printer-state-change-time printer-supply printer-supply-description
printer-supply-info-uri printer-uuid pwg-raster-document-resolution-supported pwg-raster-document-sheet-back
pwg-raster-document-type-supported which-jobs-supported urf-supported page-ranges-supported
""".split()


def status(**changes: object) -> PrinterStatus:
    values: dict[str, object] = dict(state="idle", reasons=(), message="Idle.", accepting=True,
                                     state_changed_at=NOW, queued_jobs=0, now=NOW + 60, up_since=NOW)  # fmt: skip
    values.update(changes)
    return PrinterStatus(**values)  # type: ignore[arg-type]


def rendered(requested: set[str] | None = None, **changes: object) -> dict[str, Attribute]:
    printer = PrinterAttributes(PrinterIdentity(uuid="0b7a3c39-6a8f-4c0e-9d7e-2f4ad1c0e001"))
    return {a.name: a for a in printer.render(status(**changes), URI, requested)}


def test_every_attribute_ipp_everywhere_requires_is_there() -> None:
    attributes = rendered({"all", "media-col-database"})
    assert [name for name in REQUIRED if name not in attributes] == []


def test_the_rendered_printer_encodes_and_says_what_clients_check() -> None:
    attributes = rendered({"all", "media-col-database"})
    message = IppMessage((2, 0), 0, 1)
    message.add_group(Tag.PRINTER, *attributes.values())
    assert decode_message(encode_message(message))[0].printer_attributes is not None
    formats = attributes["document-format-supported"].all
    assert {"application/pdf", "image/pwg-raster", "image/urf", "image/jpeg", "application/postscript",
            "application/vnd.hp-pcl", "text/plain", "application/octet-stream"} <= set(formats)  # fmt: skip
    assert re.match(r"^([-A-Za-z ]+:[^;]*;)+$", str(attributes["printer-device-id"].first))
    assert str(attributes["printer-uuid"].first).startswith("urn:uuid:")
    assert attributes["printer-uri-supported"].all == [URI]
    assert len(attributes["uri-security-supported"].all) == len(attributes["printer-uri-supported"].all)
    assert {"document-number", "document-numbers", "pages"} <= set(attributes["overrides-supported"].all)
    assert attributes["printer-geo-location"].tag == Tag.UNKNOWN
    keys = [member.get("media-key").first for member in attributes["media-col-database"].all]  # type: ignore
    assert len(keys) == len(set(keys))
    for name in ("media-default",):
        assert re.match(r"^[a-z0-9]+_[a-z0-9.-]+_[0-9.]+x[0-9.]+(in|mm)$", str(attributes[name].first))
    supply, descriptions = attributes["printer-supply"].all, attributes["printer-supply-description"].all
    assert len(supply) == len(descriptions)


@pytest.mark.parametrize("state,reasons,enum", [
    ("idle", (), 3),
    ("processing", ("connecting-to-device",), 4),
    ("stopped", ("paused",), 5),
    ("processing", ("offline-report", "connecting-to-device"), 4),
])  # fmt: skip
def test_printer_state_and_reasons_are_rendered_as_given(state: str, reasons: tuple[str, ...], enum: int) -> None:
    attributes = rendered({"printer-state", "printer-state-reasons"}, state=state, reasons=reasons)
    assert attributes["printer-state"].first == enum
    assert attributes["printer-state-reasons"].all == list(reasons or ("none",))


make_job = job_factory(job_id=12, uuid="5d3c0b8e-0000-4000-8000-000000000012", protocol="ipp", host="127.0.0.1",
                       name="Budget", size=5000, reason="job-queued", created_at=NOW)


def test_job_attributes_cover_what_clients_poll() -> None:
    attributes = {a.name: a for a in job_attributes(make_job(), URI, None)}
    for name in ("job-id", "job-uri", "job-uuid", "job-state", "job-state-reasons", "job-state-message", "job-name",
                 "job-originating-user-name", "job-printer-uri", "time-at-creation", "time-at-processing",
                 "time-at-completed", "date-time-at-creation", "date-time-at-processing", "date-time-at-completed",
                 "copies", "sides", "document-format", "job-k-octets", "job-impressions-completed"):  # fmt: skip
        assert name in attributes
    assert attributes["job-uri"].first == f"{URI}/12" and attributes["job-k-octets"].first == 5
    assert attributes["time-at-completed"].tag == Tag.NO_VALUE
    done = {a.name: a for a in job_attributes(make_job(state=JobState.COMPLETED, completed_at=NOW + 3), URI, None)}
    assert done["time-at-completed"].first == int(NOW + 3) and done["job-state"].first == 9


def test_requested_job_attributes_are_filtered() -> None:
    names = [a.name for a in job_attributes(make_job(), URI, {"job-id", "job-state"})]
    assert names == ["job-id", "job-state"]


JOB_TEMPLATE = [
    (Attribute.integer("copies", 2), True),
    (Attribute.integer("copies", 0), False),
    (Attribute.keyword("sides", "two-sided-short-edge"), True),
    (Attribute.keyword("sides", "sideways"), False),
    (Attribute.keyword("media", "iso_a4_210x297mm"), True),
    (Attribute.keyword("media", "iso_a0_841x1189mm"), False),
    (Attribute.enum("print-quality", 5), True),
    (Attribute.enum("print-quality", 7), False),
    (Attribute.resolution("printer-resolution", (600, 600, 3)), True),
    (Attribute.resolution("printer-resolution", (1200, 1200, 3)), False),
    (Attribute.range("page-ranges", (1, 3), (5, 7)), True),
    (Attribute.range("page-ranges", (3, 1)), False),
    (Attribute.keyword("job-hold-until", "indefinite"), True),
    (Attribute.keyword("job-hold-until", "weekend"), False),
    (Attribute.collection("media-col", [Attribute.keyword("media-source", "main")]), True),
    (Attribute.integer("number-up", 2), False),
    (Attribute.integer("x-vendor", 1), False),
]  # fmt: skip


@pytest.mark.parametrize("attribute,supported", JOB_TEMPLATE, ids=[f"{a.name}={a.all}" for a, _ in JOB_TEMPLATE])
def test_job_template_checks(attribute: Attribute, supported: bool) -> None:
    assert (check_job_template([attribute]) == []) is supported


def test_the_header_scanner_finds_the_document_only_when_the_header_is_whole() -> None:
    message = IppMessage((2, 0), 2, 1)
    message.add_group(Tag.OPERATION, Attribute.charset("attributes-charset", "utf-8"),
                      Attribute.language("attributes-natural-language", "en"))  # fmt: skip
    message.add_group(Tag.JOB, Attribute.collection("media-col", [Attribute.keyword("media-source", "main")]))
    header = encode_message(message)
    wire = header + b"\x03%PDF data with \x03 and \x01 in it"
    for cut in range(len(header)):
        assert find_data_offset(wire[:cut]) is None
    assert find_data_offset(wire) == len(header)
    assert decode_message(wire[: len(header)])[1] == len(header)


def test_ipp_configuration_keys(tmp_path: Path) -> None:
    config = config_from_mapping({"ipp": {"name": "Office", "location": "2nd floor", "admin_users": ["root"],
                                          "max_request_size": "1GiB", "color": False}},
                                 base=tmp_path, state_dir=tmp_path)  # fmt: skip
    assert (config.ipp.name, config.ipp.location, config.ipp.admin_users) == ("Office", "2nd floor", ("root",))
    assert config.ipp.max_request_size == 1024**3 and config.ipp.color is False
    assert config.listen.ipp == "tcp:8631:interface=127.0.0.1"
    for bad in ({"name": 7}, {"admin_users": "root"}, {"color": "yes"}, {"nope": 1}):
        with pytest.raises(ConfigError):
            config_from_mapping({"ipp": bad}, base=tmp_path, state_dir=tmp_path)
