"""IPP attribute rendering: the printer's description (IPP Everywhere, PWG 5100.14), job attributes,
the job-template values the printer supports, and requested-attributes filtering. Pure: no I/O."""

from __future__ import annotations

import uuid as uuid_module
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from spooler.ipp.codec import Attribute, Value
from spooler.ipp.server.subscriptions import DEFAULT_EVENTS, DEFAULT_LEASE, EVENT_LIFE, EVENTS, MAX_EVENTS, MAX_LEASE
from spooler.ipp.tags import Operation, Tag
from spooler.model import Job
from spooler.jobs.printer_settings import SETTABLE_TEXTS

#: Document formats the printer accepts (it spools them; the device or the server renders them).
DOCUMENT_FORMATS = (
    "application/pdf",
    "image/pwg-raster",
    "image/urf",
    "image/jpeg",
    "application/postscript",
    "application/vnd.hp-pcl",
    "text/plain",
    "application/octet-stream",
)
DEFAULT_FORMAT = "application/octet-stream"
COMPRESSIONS = ("none", "deflate", "gzip")
IPP_VERSIONS = ("1.0", "1.1", "2.0", "2.1", "2.2")
SUPPORTED_VERSIONS = frozenset({(1, 0), (1, 1), (2, 0), (2, 1), (2, 2)})

#: Every operation the printer carries out (IPP/2.2, PWG 5100.12 section 6.4, plus Identify-Printer, and
#: CUPS' accept/reject, which cupsaccept and cupsreject send).
OPERATIONS = (
    Operation.PRINT_JOB, Operation.VALIDATE_JOB, Operation.CREATE_JOB, Operation.SEND_DOCUMENT,
    Operation.CANCEL_JOB, Operation.GET_JOB_ATTRIBUTES, Operation.GET_JOBS, Operation.GET_PRINTER_ATTRIBUTES,
    Operation.HOLD_JOB, Operation.RELEASE_JOB, Operation.RESTART_JOB, Operation.PAUSE_PRINTER,
    Operation.RESUME_PRINTER, Operation.PURGE_JOBS, Operation.SET_PRINTER_ATTRIBUTES, Operation.SET_JOB_ATTRIBUTES,
    Operation.GET_PRINTER_SUPPORTED_VALUES, Operation.CREATE_PRINTER_SUBSCRIPTIONS,
    Operation.CREATE_JOB_SUBSCRIPTIONS, Operation.GET_SUBSCRIPTION_ATTRIBUTES, Operation.GET_SUBSCRIPTIONS,
    Operation.RENEW_SUBSCRIPTION, Operation.CANCEL_SUBSCRIPTION, Operation.GET_NOTIFICATIONS,
    Operation.ENABLE_PRINTER, Operation.DISABLE_PRINTER, Operation.PAUSE_PRINTER_AFTER_CURRENT_JOB,
    Operation.HOLD_NEW_JOBS, Operation.RELEASE_HELD_NEW_JOBS, Operation.RESTART_PRINTER, Operation.SHUTDOWN_PRINTER,
    Operation.STARTUP_PRINTER, Operation.REPROCESS_JOB, Operation.CANCEL_CURRENT_JOB, Operation.SUSPEND_CURRENT_JOB,
    Operation.RESUME_JOB, Operation.PROMOTE_JOB, Operation.SCHEDULE_JOB_AFTER, Operation.CANCEL_DOCUMENT,
    Operation.GET_DOCUMENT_ATTRIBUTES, Operation.GET_DOCUMENTS, Operation.SET_DOCUMENT_ATTRIBUTES,
    Operation.CANCEL_JOBS, Operation.CANCEL_MY_JOBS, Operation.RESUBMIT_JOB, Operation.CLOSE_JOB,
    Operation.IDENTIFY_PRINTER, Operation.CUPS_ACCEPT_JOBS, Operation.CUPS_REJECT_JOBS,
)  # fmt: skip

WHICH_JOBS = (
    "completed", "not-completed", "aborted", "all", "canceled", "pending", "pending-held", "processing",
    "processing-stopped", "proof-print",
)  # fmt: skip
#: Job attributes Set-Job-Attributes changes (spooler.jobs.queue_admin), and printer attributes
#: Set-Printer-Attributes changes (spooler.jobs.printer_settings.SETTABLE_TEXTS).
JOB_SETTABLE = ("copies", "job-hold-until", "job-name", "sides")
PRINTER_SETTABLE = tuple(sorted(SETTABLE_TEXTS))
DOCUMENT_SETTABLE = ("document-name",)

# Media: PWG self-describing names, sizes in hundredths of millimetres.
MEDIA_SIZES: dict[str, tuple[int, int]] = {
    "iso_a4_210x297mm": (21000, 29700),
    "na_letter_8.5x11in": (21590, 27940),
    "na_legal_8.5x14in": (21590, 35560),
    "iso_a5_148x210mm": (14800, 21000),
    "iso_a3_297x420mm": (29700, 42000),
    "na_index-4x6_4x6in": (10160, 15240),
    "na_number-10_4.125x9.5in": (10477, 24130),
    "iso_dl_110x220mm": (11000, 22000),
}
MEDIA_SOURCES = ("auto", "main", "manual")
MEDIA_TYPES = ("auto", "stationery", "envelope", "labels", "cardstock", "transparency", "other")
MARGINS = (0, 423)  # borderless and 4.23 mm
SIDES = ("one-sided", "two-sided-long-edge", "two-sided-short-edge")
COLOR_MODES = ("auto", "monochrome", "color")
RESOLUTIONS = ((300, 300, 3), (600, 600, 3))
RASTER_TYPES = ("black_1", "sgray_8", "srgb_8")
URF_SUPPORTED = ("V1.4", "CP1", "DM1", "IS1", "MT1-2-3-4-5-6", "OB10", "PQ3-4-5", "RS300-600", "SRGB24", "W8")
QUALITIES = (3, 4, 5)  # draft, normal, high
ORIENTATIONS = (3, 4, 5, 6)
FINISHINGS = (3,)  # none
OUTPUT_BINS = ("face-down",)
JOB_SHEETS = ("none", "standard")
HOLD_UNTIL = ("no-hold", "indefinite")
MULTIPLE_DOCUMENT_HANDLING = ("separate-documents-uncollated-copies", "separate-documents-collated-copies")
CONTENT_OPTIMIZE = ("auto", "graphics", "photo", "text", "text-and-graphics")
RENDERING_INTENTS = ("auto", "perceptual", "relative")
PRINT_SCALING = ("auto", "auto-fit", "fill", "fit", "none")
IDENTIFY_ACTIONS = ("display", "flash", "sound")
MAX_COPIES = 999

#: Job-template attributes accepted in a job group, and how each is checked (see check_job_template).
JOB_CREATION_ATTRIBUTES = (
    "copies", "finishings", "ipp-attribute-fidelity", "job-hold-until", "job-name", "job-priority", "job-sheets",
    "media", "media-col", "multiple-document-handling", "number-up", "orientation-requested", "output-bin",
    "page-ranges", "print-color-mode", "print-content-optimize", "print-quality", "print-rendering-intent",
    "print-scaling", "printer-resolution", "sides", "document-format", "document-name",
)  # fmt: skip


def ipp_datetime(seconds: float) -> datetime:
    return datetime.fromtimestamp(int(seconds), tz=timezone.utc)


def media_col(name: str, *, source: str | None = None, media_type: str | None = None,
              margin: int = 423) -> list[Attribute]:  # fmt: skip
    """The members of one media-col value (media-col-database, -default, -ready)."""
    x, y = MEDIA_SIZES[name]
    members = [
        Attribute.keyword("media-key", "_".join([name] + ([source] if source else []) + ([media_type] if media_type
                                                 else []) + (["borderless"] if margin == 0 else []))),
        Attribute.collection("media-size", [Attribute.integer("x-dimension", x), Attribute.integer("y-dimension", y)]),
        Attribute.keyword("media-size-name", name),
        Attribute.integer("media-bottom-margin", margin),
        Attribute.integer("media-left-margin", margin),
        Attribute.integer("media-right-margin", margin),
        Attribute.integer("media-top-margin", margin),
    ]
    if source is not None:
        members.append(Attribute.keyword("media-source", source))
    if media_type is not None:
        members.append(Attribute.keyword("media-type", media_type))
    return members


@dataclass(frozen=True)
class PrinterIdentity:
    """What the configuration says about the printer (see the [ipp] section)."""

    name: str = "Spooler"
    info: str = "Spooler print queue"
    location: str = ""
    make_and_model: str = "Spooler IPP Everywhere"
    organization: str = ""
    organizational_unit: str = ""
    uuid: str = field(default_factory=lambda: str(uuid_module.uuid4()))
    default_media: str = "iso_a4_210x297mm"
    color: bool = True
    max_job_size: int = 2 * 1024**3
    multiple_operation_timeout: int = 60


@dataclass(frozen=True)
class PrinterStatus:
    """What is true of the printer now (from the job service): state keyword, reasons, message."""

    state: str  # idle | processing | stopped
    reasons: tuple[str, ...]
    message: str
    accepting: bool
    state_changed_at: float
    queued_jobs: int
    now: float
    up_since: float


PRINTER_STATE_ENUM = {"idle": 3, "processing": 4, "stopped": 5}

# Attribute group names of requested-attributes (RFC 8011 4.2.5.1, PWG 5100.12).
JOB_TEMPLATE_NAMES = frozenset({
    "copies-default", "copies-supported", "finishings-default", "finishings-supported", "job-hold-until-default",
    "job-hold-until-supported", "job-priority-default", "job-priority-supported", "job-sheets-default",
    "job-sheets-supported", "media-col-default", "media-col-ready", "media-col-supported", "media-default",
    "media-ready", "media-supported", "media-size-supported", "media-source-supported", "media-type-supported",
    "media-bottom-margin-supported", "media-left-margin-supported", "media-right-margin-supported",
    "media-top-margin-supported", "multiple-document-handling-default", "multiple-document-handling-supported",
    "number-up-default", "number-up-supported", "orientation-requested-default", "orientation-requested-supported",
    "output-bin-default", "output-bin-supported", "page-ranges-supported", "print-color-mode-default",
    "print-color-mode-supported", "print-content-optimize-default", "print-content-optimize-supported",
    "print-quality-default", "print-quality-supported", "print-rendering-intent-default",
    "print-rendering-intent-supported", "print-scaling-default", "print-scaling-supported",
    "printer-resolution-default", "printer-resolution-supported", "sides-default", "sides-supported",
    "overrides-supported", "preferred-attributes-supported",
})  # fmt: skip


_TEXTUAL = (Tag.KEYWORD, Tag.NAME)
#: What the real device's own Get-Printer-Attributes answer may tell about its paper path and
#: formats, and the value tags accepted for each (anything else in its answer is ignored).
DEVICE_ATTRIBUTES: dict[str, tuple[int, ...]] = {
    "media-supported": _TEXTUAL, "media-default": _TEXTUAL, "media-ready": _TEXTUAL,
    "media-col-default": (Tag.BEGIN_COLLECTION,), "media-col-ready": (Tag.BEGIN_COLLECTION,),
    "media-col-database": (Tag.BEGIN_COLLECTION,), "media-size-supported": (Tag.BEGIN_COLLECTION,),
    "media-source-supported": _TEXTUAL, "media-type-supported": _TEXTUAL,
    "media-bottom-margin-supported": (Tag.INTEGER,), "media-left-margin-supported": (Tag.INTEGER,),
    "media-right-margin-supported": (Tag.INTEGER,), "media-top-margin-supported": (Tag.INTEGER,),
    "sides-supported": (Tag.KEYWORD,), "sides-default": (Tag.KEYWORD,),
    "print-color-mode-supported": (Tag.KEYWORD,), "print-color-mode-default": (Tag.KEYWORD,),
    "color-supported": (Tag.BOOLEAN,),
    "printer-resolution-supported": (Tag.RESOLUTION,), "printer-resolution-default": (Tag.RESOLUTION,),
    "copies-supported": (Tag.RANGE,), "copies-default": (Tag.INTEGER,),
    "finishings-supported": (Tag.ENUM,), "finishings-default": (Tag.ENUM,),
    "output-bin-supported": _TEXTUAL, "output-bin-default": _TEXTUAL,
    "print-quality-supported": (Tag.ENUM,), "print-quality-default": (Tag.ENUM,),
    "pwg-raster-document-resolution-supported": (Tag.RESOLUTION,),
    "pwg-raster-document-type-supported": (Tag.KEYWORD,), "pwg-raster-document-sheet-back": (Tag.KEYWORD,),
    "urf-supported": (Tag.KEYWORD,), "document-format-supported": (Tag.MIME_MEDIA_TYPE,),
    "pages-per-minute": (Tag.INTEGER,), "pages-per-minute-color": (Tag.INTEGER,),
}  # fmt: skip
#: A job attribute and the device's "-supported" attribute whose values it must be among.
_JOB_CHECKED_BY_DEVICE = {
    "sides": "sides-supported", "print-color-mode": "print-color-mode-supported", "output-bin": "output-bin-supported",
    "print-quality": "print-quality-supported", "finishings": "finishings-supported",
    "printer-resolution": "printer-resolution-supported",
}  # fmt: skip
#: (default, supported) pairs kept consistent when only the "-supported" side came from the device.
_DEFAULT_PAIRS = (
    ("media-default", "media-supported"), ("sides-default", "sides-supported"),
    ("print-color-mode-default", "print-color-mode-supported"), ("output-bin-default", "output-bin-supported"),
    ("print-quality-default", "print-quality-supported"), ("finishings-default", "finishings-supported"),
    ("printer-resolution-default", "printer-resolution-supported"),
)  # fmt: skip


def device_description(printer: Iterable[Attribute]) -> dict[str, Attribute]:
    """The attributes of a device's Get-Printer-Attributes answer that describe its paper path and
    formats, well-formed ones only (known name, at least one value, the expected tags; single-valued
    defaults). Pure: the table of what is taken is DEVICE_ATTRIBUTES."""
    taken: dict[str, Attribute] = {}
    for attribute in printer:
        tags = DEVICE_ATTRIBUTES.get(attribute.name)
        if tags is None or not attribute.values or any(v.tag not in tags for v in attribute.values):
            continue
        if attribute.name.endswith("-default") and len(attribute.values) != 1:
            continue
        taken[attribute.name] = Attribute(attribute.name, list(attribute.values))
    return taken


def _in_values(supported: Attribute) -> Any:
    allowed = [(v.tag in _TEXTUAL, v.value) for v in supported.values]

    def check(attribute: Attribute) -> bool:
        return all((v.tag in _TEXTUAL, v.value) in allowed for v in attribute.values)

    return check


class PrinterAttributes:
    """Renders the printer's attributes. The static part is built once (again when the device
    describes itself, see `describe_device`); the state part per request."""

    def __init__(self, identity: PrinterIdentity, device: dict[str, Attribute] | None = None) -> None:
        self.identity = identity
        self.device: dict[str, Attribute] = {}
        self.document_formats: tuple[str, ...] = DOCUMENT_FORMATS
        self.job_template_checks: dict[str, Any] = dict(JOB_TEMPLATE_CHECKS)
        self._static = self._build_static()
        self._media_col_database = Attribute.collection(
            "media-col-database",
            *(media_col(name, margin=margin) for name in MEDIA_SIZES for margin in MARGINS),
        )
        self._own_media_col_database = self._media_col_database
        if device:
            self.describe_device(device)

    def describe_device(self, device: dict[str, Attribute]) -> None:
        """Take the real device's description (from `device_description`): its paper path replaces
        the defaults, the formats it accepts narrow ours (application/octet-stream, detected, stays),
        and job attributes are checked against what it supports. An empty dict restores the defaults."""
        self.device = dict(device)
        static = self._build_static()
        names = {attribute.name for attribute in static}
        adopted = {name: attribute for name, attribute in device.items()
                   if name not in ("media-col-database", "document-format-supported")}  # fmt: skip
        for default, supported in _DEFAULT_PAIRS:
            if supported in adopted and default not in adopted:
                current = next((a for a in static if a.name == default), None)
                if current is not None and current.values[0].value not in adopted[supported].all:
                    adopted[default] = Attribute(default, [adopted[supported].values[0]])
        if "media-default" in adopted and "media-ready" not in adopted:
            adopted["media-ready"] = Attribute("media-ready", list(adopted["media-default"].values))
        if "color-supported" not in adopted and "print-color-mode-supported" in adopted:
            adopted["color-supported"] = Attribute.boolean("color-supported",
                                                           "color" in adopted["print-color-mode-supported"].all)
        formats: tuple[str, ...] = DOCUMENT_FORMATS
        if "document-format-supported" in device:
            accepted = {str(value).lower() for value in device["document-format-supported"].all}
            narrowed = tuple(f for f in DOCUMENT_FORMATS if f in accepted and f != DEFAULT_FORMAT)
            if narrowed:
                formats = narrowed + (DEFAULT_FORMAT,)
        self.document_formats = formats
        adopted["document-format-supported"] = Attribute.mime("document-format-supported", *formats)
        self._static = [adopted.get(attribute.name, attribute) for attribute in static] + \
            [attribute for name, attribute in adopted.items() if name not in names]
        if "color-supported" in adopted and adopted["color-supported"].first is False:
            self._static = [a for a in self._static if a.name != "pages-per-minute-color"]  # colour only
        self._static.sort(key=lambda attribute: attribute.name)
        self._media_col_database = device.get("media-col-database", self._own_media_col_database)
        checks = dict(JOB_TEMPLATE_CHECKS)
        for job_attribute, supported in _JOB_CHECKED_BY_DEVICE.items():
            if supported in adopted:
                checks[job_attribute] = _in_values(adopted[supported])
        if "media-supported" in adopted:
            media = Attribute("media", list(adopted["media-supported"].values)
                              + [Value(Tag.KEYWORD, source) for source in MEDIA_SOURCES])  # fmt: skip
            in_media = _in_values(media)
            checks["media"] = lambda attribute: len(attribute.values) == 1 and in_media(attribute)
        if "copies-supported" in adopted:
            bounds: Any = adopted["copies-supported"].values[0].value
            checks["copies"] = _integer_in(int(bounds[0]), int(bounds[1]))
        self.job_template_checks = checks

    def _build_static(self) -> list[Attribute]:
        ident = self.identity
        default_x, default_y = MEDIA_SIZES[ident.default_media]
        color_modes = COLOR_MODES if ident.color else ("auto", "monochrome")
        raster_types = RASTER_TYPES if ident.color else RASTER_TYPES[:2]
        return [
            Attribute.charset("charset-configured", "utf-8"),
            Attribute.charset("charset-supported", "us-ascii", "utf-8"),
            Attribute.boolean("color-supported", ident.color),
            Attribute.keyword("compression-supported", *COMPRESSIONS),
            Attribute.integer("copies-default", 1),
            Attribute.range("copies-supported", (1, MAX_COPIES)),
            Attribute.mime("document-format-default", DEFAULT_FORMAT),
            Attribute.mime("document-format-preferred", "application/pdf"),
            Attribute.mime("document-format-supported", *DOCUMENT_FORMATS),
            Attribute.enum("finishings-default", 3),
            Attribute.enum("finishings-supported", *FINISHINGS),
            Attribute.language("generated-natural-language-supported", "en"),
            Attribute.integer("ippget-event-life", EVENT_LIFE),
            Attribute.keyword("identify-actions-default", "sound"),
            Attribute.keyword("identify-actions-supported", *IDENTIFY_ACTIONS),
            Attribute.keyword("ipp-features-supported", "ipp-everywhere"),
            Attribute.keyword("ipp-versions-supported", *IPP_VERSIONS),
            Attribute.keyword("job-creation-attributes-supported", *JOB_CREATION_ATTRIBUTES),
            Attribute.keyword("job-hold-until-default", "no-hold"),
            Attribute.keyword("job-hold-until-supported", *HOLD_UNTIL),
            Attribute.boolean("job-ids-supported", True),
            Attribute.range("job-k-octets-supported", (0, min(ident.max_job_size // 1024, 0x7FFFFFFF))),
            # Private print (PWG 5100.11): a job-password holds the job until it is released with it.
            Attribute.keyword("job-password-encryption-supported", "none"),
            Attribute.integer("job-password-supported", 255),
            Attribute.integer("job-priority-default", 50),
            Attribute.integer("job-priority-supported", 1),
            Attribute.name("job-sheets-default", "none"),
            Attribute.keyword("job-settable-attributes-supported", *JOB_SETTABLE),
            Attribute.name("job-sheets-supported", *JOB_SHEETS),
            Attribute.integer("media-bottom-margin-supported", *MARGINS),
            Attribute.collection("media-col-default", media_col(ident.default_media, source="main",
                                                                 media_type="stationery")),  # fmt: skip
            Attribute.collection("media-col-ready", media_col(ident.default_media, source="main",
                                                               media_type="stationery")),  # fmt: skip
            Attribute.keyword("media-col-supported", "media-bottom-margin", "media-left-margin", "media-right-margin",
                              "media-size", "media-size-name", "media-source", "media-top-margin",
                              "media-type"),  # fmt: skip
            Attribute.keyword("media-default", ident.default_media),
            Attribute.integer("media-left-margin-supported", *MARGINS),
            Attribute.keyword("media-ready", ident.default_media),
            Attribute.integer("media-right-margin-supported", *MARGINS),
            Attribute.collection("media-size-supported", *(
                [Attribute.integer("x-dimension", x), Attribute.integer("y-dimension", y)]
                for x, y in MEDIA_SIZES.values()
            )),  # fmt: skip
            Attribute.keyword("media-source-supported", *MEDIA_SOURCES),
            Attribute.keyword("media-supported", *MEDIA_SIZES),
            Attribute.integer("media-top-margin-supported", *MARGINS),
            Attribute.keyword("media-type-supported", *MEDIA_TYPES),
            Attribute.text("mopria-certified", "1.3"),
            Attribute.keyword("multiple-document-handling-default", MULTIPLE_DOCUMENT_HANDLING[0]),
            Attribute.keyword("multiple-document-handling-supported", *MULTIPLE_DOCUMENT_HANDLING),
            Attribute.keyword("document-settable-attributes-supported", *DOCUMENT_SETTABLE),
            Attribute.boolean("multiple-document-jobs-supported", True),
            Attribute.integer("multiple-operation-time-out", ident.multiple_operation_timeout),
            Attribute.keyword("multiple-operation-time-out-action", "abort-job"),
            Attribute.language("natural-language-configured", "en"),
            Attribute.keyword("notify-events-default", *DEFAULT_EVENTS),
            Attribute.keyword("notify-events-supported", *EVENTS),
            Attribute.integer("notify-lease-duration-default", DEFAULT_LEASE),
            Attribute.range("notify-lease-duration-supported", (1, MAX_LEASE)),
            Attribute.integer("notify-max-events-supported", MAX_EVENTS),
            Attribute.keyword("notify-pull-method-supported", "ippget"),
            Attribute.integer("number-up-default", 1),
            Attribute.integer("number-up-supported", 1),
            Attribute.enum("operations-supported", *OPERATIONS),
            Attribute.enum("orientation-requested-default", 3),
            Attribute.enum("orientation-requested-supported", *ORIENTATIONS),
            Attribute.keyword("output-bin-default", OUTPUT_BINS[0]),
            Attribute.keyword("output-bin-supported", *OUTPUT_BINS),
            Attribute.keyword("overrides-supported", "document-number", "document-numbers", "pages"),
            Attribute.boolean("page-ranges-supported", True),
            Attribute.integer("pages-per-minute", 20),
            *([Attribute.integer("pages-per-minute-color", 20)] if ident.color else []),
            Attribute.keyword("pdl-override-supported", "attempted"),
            Attribute.boolean("preferred-attributes-supported", False),
            Attribute.keyword("print-color-mode-default", "auto"),
            Attribute.keyword("print-color-mode-supported", *color_modes),
            Attribute.keyword("print-content-optimize-default", "auto"),
            Attribute.keyword("print-content-optimize-supported", *CONTENT_OPTIMIZE),
            Attribute.enum("print-quality-default", 4),
            Attribute.enum("print-quality-supported", *QUALITIES),
            Attribute.keyword("print-rendering-intent-default", "auto"),
            Attribute.keyword("print-rendering-intent-supported", *RENDERING_INTENTS),
            Attribute.keyword("print-scaling-default", "auto"),
            Attribute.keyword("print-scaling-supported", *PRINT_SCALING),
            Attribute.datetime("printer-config-change-date-time", ipp_datetime(0)),  # replaced per request
            Attribute.text("printer-device-id", self.device_id()),
            Attribute.out_of_band("printer-geo-location", Tag.UNKNOWN),
            Attribute.keyword("printer-get-attributes-supported", "document-format"),
            Attribute.text("printer-info", ident.info or ident.name),
            Attribute.text("printer-location", ident.location),
            Attribute.text("printer-make-and-model", ident.make_and_model),
            Attribute.text("printer-message-from-operator", ""),
            Attribute.name("printer-name", ident.name[:127]),
            Attribute.text("printer-organization", ident.organization),
            Attribute.text("printer-organizational-unit", ident.organizational_unit),
            Attribute.resolution("printer-resolution-default", RESOLUTIONS[-1]),
            Attribute.resolution("printer-resolution-supported", *RESOLUTIONS),
            Attribute.keyword("printer-settable-attributes-supported", *PRINTER_SETTABLE),
            Attribute.octets("printer-supply", b"index=1;class=supplyThatIsConsumed;type=toner;unit=percent;"
                                               b"maxcapacity=100;level=-3;colorantname=black;"),  # fmt: skip
            Attribute.text("printer-supply-description", "Black Toner"),
            Attribute.uri("printer-uuid", f"urn:uuid:{ident.uuid}"),
            Attribute.resolution("pwg-raster-document-resolution-supported", *RESOLUTIONS),
            Attribute.keyword("pwg-raster-document-sheet-back", "normal"),
            Attribute.keyword("pwg-raster-document-type-supported", *raster_types),
            Attribute.keyword("sides-default", "one-sided"),
            Attribute.keyword("sides-supported", *SIDES),
            Attribute.keyword("urf-supported", *URF_SUPPORTED),
            Attribute.keyword("uri-authentication-supported", "requesting-user-name"),
            Attribute.keyword("uri-security-supported", "none"),
            Attribute.keyword("which-jobs-supported", *WHICH_JOBS),
        ]

    def device_id(self) -> str:
        make, _, model = self.identity.make_and_model.partition(" ")
        model = model or make
        return f"MFG:{make};MDL:{model};CMD:PDF,PWG,URF,JPEG,PS,PCL;CLS:PRINTER;"

    def render(self, status: PrinterStatus, base_uri: str, requested: set[str] | None,
               uris: list[tuple[str, str, str]] | None = None,
               overrides: Iterable[Attribute] = ()) -> list[Attribute]:  # fmt: skip
        """Every attribute the request asks for (requested: a set of names or group names; None = all).
        `uris`: (printer-uri-supported, uri-security-supported, uri-authentication-supported) of each
        listener, the one the client used first; default: `base_uri`, no security, requesting-user-name.
        `overrides`: attributes of the queue addressed (printer-name, what an administrator set) that
        replace or join the printer's own."""
        up = int(status.up_since)
        uris = uris or [(base_uri, "none", "requesting-user-name")]
        dynamic = [
            Attribute.datetime("printer-config-change-date-time", ipp_datetime(status.up_since)),
            Attribute.integer("printer-config-change-time", up),
            Attribute.datetime("printer-current-time", ipp_datetime(status.now)),
            Attribute.uri("printer-icons", f"{base_uri_http(base_uri)}/icon.png"),
            Attribute.boolean("printer-is-accepting-jobs", status.accepting),
            Attribute.uri("printer-more-info", f"{base_uri_http(base_uri)}/"),
            Attribute.enum("printer-state", PRINTER_STATE_ENUM[status.state]),
            Attribute.datetime("printer-state-change-date-time", ipp_datetime(status.state_changed_at)),
            Attribute.integer("printer-state-change-time", max(1, int(status.state_changed_at))),
            Attribute.text("printer-state-message", status.message),
            Attribute.keyword("printer-state-reasons", *(status.reasons or ("none",))),
            Attribute.uri("printer-supply-info-uri", f"{base_uri_http(base_uri)}/supplies"),
            Attribute.integer("printer-up-time", max(1, int(status.now))),
            Attribute.uri("printer-uri-supported", *(uri for uri, _, _ in uris)),
            Attribute.integer("queued-job-count", status.queued_jobs),
            Attribute.keyword("uri-authentication-supported", *(authentication for _, _, authentication in uris)),
            Attribute.keyword("uri-security-supported", *(security for _, security, _ in uris)),
        ]
        replaced = {attribute.name: attribute for attribute in overrides}
        per_uri = {"printer-config-change-date-time", "uri-authentication-supported", "uri-security-supported"}
        attributes = [a for a in self._static if a.name not in per_uri] + dynamic
        attributes = [replaced.pop(a.name, a) for a in attributes] + list(replaced.values())
        if requested is None or "all" in requested:
            chosen = attributes
        else:
            wanted = set(requested)
            chosen = [
                a for a in attributes
                if a.name in wanted
                or ("job-template" in wanted and a.name in JOB_TEMPLATE_NAMES)
                or ("printer-description" in wanted and a.name not in JOB_TEMPLATE_NAMES)
            ]  # fmt: skip
        if requested is not None and "media-col-database" in requested:
            chosen.append(self._media_col_database)
        return chosen


#: printer-alert (PWG 5100.9) of each printer-state-reasons keyword that is a fault.
_ALERTS = {
    "offline-report": ("code=other;severity=critical;training=none;group=interface", "The device is unreachable."),
    "spool-area-full": ("code=other;severity=warning;training=none;group=storage", "The spool is full."),
    "other-report": ("code=other;severity=warning;training=none;group=interface",
                     "The central print server is unreachable."),
    "shutdown": ("code=other;severity=critical;training=none;group=generalPrinter", "Shut down."),
}


def printer_alerts(status: PrinterStatus) -> list[tuple[bytes, str]]:
    """printer-alert values and their printer-alert-description, one per fault in the printer's
    reasons. With no fault, one empty value and text (an IPP attribute has at least one value)."""
    alerts = [(f"index={index};{code}".encode(), text)
              for index, (code, text) in enumerate((_ALERTS[r] for r in status.reasons if r in _ALERTS), start=1)]
    return alerts or [(b"", "")]


def base_uri_http(printer_uri: str) -> str:
    """http://host:port for a printer URI ipp://host:port/ipp/print (icons and more-info)."""
    rest = printer_uri.split("://", 1)[-1]
    return "http://" + rest.split("/", 1)[0]


# -- job attributes ------------------------------------------------------------------------------

JOB_DESCRIPTION_DEFAULT = ("job-uri", "job-id")


def job_summary(job: Job, printer_uri: str) -> list[Attribute]:
    """What a job-creating operation answers (RFC 8011 4.2.1.2): job-uri, job-id, job-uuid (the one
    its client gave, if any, as CUPS does), job-state, job-state-reasons, job-state-message; built
    alone, as every Print-Job needs it."""
    return [
        Attribute.uri("job-uri", f"{printer_uri}/{job.job_id}"),
        Attribute.integer("job-id", job.job_id),
        Attribute.uri("job-uuid", f"urn:uuid:{job.attributes.get('client_job_uuid') or job.uuid}"),
        Attribute.enum("job-state", int(job.state)),
        Attribute.keyword("job-state-reasons", job.reason or "none"),
        Attribute.text("job-state-message", job.message[:1023] or job.state.keyword),
    ]


def job_attributes(job: Job, printer_uri: str, requested: set[str] | None, now: float | None = None, *,
                   hidden: frozenset[str] = frozenset()) -> list[Attribute]:  # fmt: skip
    """The job's attributes (requested None or containing "all" = every one we know), less `hidden`
    ones (private values of someone else's job). Times are seconds since the epoch, as CUPS does,
    so that they stay comparable across restarts."""
    def when(seconds: float | None, name: str) -> Attribute:
        if seconds is None:
            return Attribute.out_of_band(name, Tag.NO_VALUE)
        return Attribute.integer(name, int(seconds))

    def date(seconds: float | None, name: str) -> Attribute:
        if seconds is None:
            return Attribute.out_of_band(name, Tag.NO_VALUE)
        return Attribute.datetime(name, ipp_datetime(seconds))

    attributes = [
        *job_summary(job, printer_uri),
        Attribute.name("job-name", job.name[:255]),
        Attribute.name("job-originating-user-name", job.user[:255]),
        Attribute.uri("job-printer-uri", printer_uri),
        Attribute.integer("job-printer-up-time", max(1, int(now if now is not None else job.created_at))),
        when(job.created_at, "time-at-creation"),
        when(job.processing_at, "time-at-processing"),
        when(job.completed_at, "time-at-completed"),
        date(job.created_at, "date-time-at-creation"),
        date(job.processing_at, "date-time-at-processing"),
        date(job.completed_at, "date-time-at-completed"),
        Attribute.integer("copies", job.copies),
        Attribute.keyword("sides", job.sides or "one-sided"),
        Attribute.mime("document-format", job.document_format),
        Attribute.integer("job-k-octets", min((job.size + 1023) // 1024, 0x7FFFFFFF)),
        Attribute.integer("job-impressions-completed", 0),
        Attribute.integer("job-media-sheets-completed", 0),
        Attribute.integer("number-of-documents", int(job.attributes.get("documents", 1 if job.size else 0))),
        Attribute.integer("job-priority", 50),
        Attribute.keyword("job-hold-until", "indefinite" if job.attributes.get("hold") else "no-hold"),
        Attribute.charset("attributes-charset", "utf-8"),
        Attribute.language("attributes-natural-language", "en"),
    ]
    attributes = [attribute for attribute in attributes if attribute.name not in hidden]
    if requested is None or "all" in requested or "job-description" in requested:
        return attributes
    wanted = set(requested)
    if "job-template" in wanted:
        wanted |= {"copies", "sides", "job-priority", "job-hold-until"}
    return [a for a in attributes if a.name in wanted]


# -- job-template checking -------------------------------------------------------------------------


def _keyword_in(allowed: Iterable[str]) -> Any:
    allowed = frozenset(allowed)
    return lambda attribute: all(v.tag in (Tag.KEYWORD, Tag.NAME) and v.value in allowed for v in attribute.values)


def _integer_in(low: int, high: int, tag: int = Tag.INTEGER) -> Any:
    return lambda attribute: len(attribute.values) == 1 and all(
        v.tag == tag and isinstance(v.value, int) and low <= v.value <= high for v in attribute.values
    )


def _enum_in(allowed: Iterable[int]) -> Any:
    allowed = frozenset(allowed)
    return lambda attribute: all(v.tag == Tag.ENUM and v.value in allowed for v in attribute.values)


def _any_of(tag: int) -> Any:
    return lambda attribute: all(v.tag == tag for v in attribute.values)


def _page_ranges(attribute: Attribute) -> bool:
    return all(v.tag == Tag.RANGE and 1 <= v.value[0] <= v.value[1] for v in attribute.values)  # type: ignore[index]


def _resolution(attribute: Attribute) -> bool:
    return len(attribute.values) == 1 and attribute.values[0].tag == Tag.RESOLUTION and \
        tuple(attribute.values[0].value) in RESOLUTIONS  # type: ignore[arg-type]


def _media(attribute: Attribute) -> bool:
    return len(attribute.values) == 1 and attribute.values[0].tag in (Tag.KEYWORD, Tag.NAME) and (
        attribute.values[0].value in MEDIA_SIZES or attribute.values[0].value in MEDIA_SOURCES
    )


def _hold_until(attribute: Attribute) -> bool:
    return len(attribute.values) == 1 and attribute.values[0].tag in (Tag.KEYWORD, Tag.NAME) and \
        attribute.values[0].value in HOLD_UNTIL


JOB_TEMPLATE_CHECKS: dict[str, Any] = {
    "copies": _integer_in(1, MAX_COPIES),
    "finishings": _enum_in(FINISHINGS),
    "job-hold-until": _hold_until,
    "job-priority": _integer_in(1, 100),
    "job-sheets": _keyword_in(JOB_SHEETS),
    "media": _media,
    "media-col": _any_of(Tag.BEGIN_COLLECTION),
    "multiple-document-handling": _keyword_in(MULTIPLE_DOCUMENT_HANDLING),
    "number-up": _integer_in(1, 1),
    "orientation-requested": _enum_in(ORIENTATIONS),
    "output-bin": _keyword_in(OUTPUT_BINS),
    "page-ranges": _page_ranges,
    "print-color-mode": _keyword_in(COLOR_MODES),
    "print-content-optimize": _keyword_in(CONTENT_OPTIMIZE),
    "print-quality": _enum_in(QUALITIES),
    "print-rendering-intent": _keyword_in(RENDERING_INTENTS),
    "print-scaling": _keyword_in(PRINT_SCALING),
    "printer-resolution": _resolution,
    "sides": _keyword_in(SIDES),
}


def check_job_template(attributes: Iterable[Attribute], checks: dict[str, Any] | None = None) -> list[Attribute]:
    """The job-group attributes the printer does not support (name and values as the client sent them,
    or with the out-of-band `unsupported` value for an attribute it does not know). `checks`: the
    printer's own (PrinterAttributes.job_template_checks), else the defaults."""
    checks = JOB_TEMPLATE_CHECKS if checks is None else checks
    unsupported: list[Attribute] = []
    for attribute in attributes:
        check = checks.get(attribute.name)
        if check is None:
            unsupported.append(Attribute(attribute.name, [Value(Tag.UNSUPPORTED, None)]))
        elif not attribute.values or not check(attribute):
            unsupported.append(attribute)
    return unsupported
