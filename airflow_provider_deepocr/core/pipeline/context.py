"""What every stage is given: the :class:`StageContext` (work area, run id, storage, OCR settings),
built once per run or Airflow task, and the settings that go into the config fingerprint."""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING, Any

from airflow_provider_deepocr.core import errors
from airflow_provider_deepocr.core.records import fingerprint
from airflow_provider_deepocr.core.work_layout import RunLayout, WorkLayout

if TYPE_CHECKING:
    from airflow_provider_deepocr.core.engines.base import OcrEngine
    from airflow_provider_deepocr.core.render import RenderLimits
    from airflow_provider_deepocr.core.sources import Storage, WorkArea


@dataclass
class OcrSettings:
    """Everything about rendering and OCR that changes the output (fingerprinted).

    :param dpi: render resolution for PDF pages.
    :param max_pages: documents with more pages are ``too_many_pages`` failure rows.
    :param max_pixels: the largest page image; see ``on_oversize``.
    :param prefetch: batches rendered ahead of the engine (0: no overlap); not fingerprinted.
    :param text_layer: ``never``; ``auto``: good PDF text layers skip the model; ``only``: never
        use the model (:mod:`~airflow_provider_deepocr.core.engines.text_layer`).
    :param on_oversize: ``downscale`` (default: a page over ``max_pixels`` is rendered at the
        highest DPI that fits, flagged ``downscaled``, its DPI on the page row) or ``fail``
        (the page is an ``image_too_large`` failure row).
    :param page_timeout_s: the time limit of one page's render, text extraction and table finding,
        run in a killable worker process (:mod:`~airflow_provider_deepocr.core.pagework`); a page
        over it is a ``page_timeout`` failure row. 0 or None: no worker, no limit. Not fingerprinted.
    """

    dpi: int = 144
    max_pages: int = 2000
    max_pixels: int = 50_000_000
    prefetch: int = 2
    text_layer: str = "never"
    on_oversize: str = "downscale"
    page_timeout_s: float | None = 60.0

    def __post_init__(self) -> None:
        if not self.page_timeout_s:  # 0 or None: no limit
            self.page_timeout_s = None
        elif self.page_timeout_s < 0:
            raise errors.ConfigError(f"page_timeout_s must be >= 0, got {self.page_timeout_s!r}")
        from airflow_provider_deepocr.core.engines.pdf_text import TEXT_LAYER_MODES
        from airflow_provider_deepocr.core.render import ON_OVERSIZE

        if self.text_layer not in TEXT_LAYER_MODES:
            raise errors.ConfigError(f"text_layer must be one of {TEXT_LAYER_MODES}, got {self.text_layer!r}")
        if self.on_oversize not in ON_OVERSIZE:
            raise errors.ConfigError(f"on_oversize must be one of {ON_OVERSIZE}, got {self.on_oversize!r}")

    def limits(self) -> RenderLimits:
        from airflow_provider_deepocr.core.render import RenderLimits

        return RenderLimits(
            max_pages=self.max_pages, max_pixels=self.max_pixels, on_oversize=self.on_oversize
        )


def config_fingerprint(engine: OcrEngine, settings: OcrSettings) -> str:
    """Fingerprint of the engine, its model and prompt, the render settings, the page preparation
    (orientation, clean-up), the text-layer reader and the parser version."""
    from airflow_provider_deepocr.core.engines.pdf_text import TEXT_READER_VERSION
    from airflow_provider_deepocr.core.pageprep import PREP_VERSION
    from airflow_provider_deepocr.core.parse import PARSER_VERSION

    return fingerprint(
        {
            "engine": engine.describe(),
            "dpi": settings.dpi,
            "max_pixels": settings.max_pixels,
            "on_oversize": settings.on_oversize,
            "parser": PARSER_VERSION,
            "text_layer": settings.text_layer,
            "pageprep": PREP_VERSION,  # what image pages look like when an engine reads them
            # what the text layer gives (tables, reading order, judgement); moot when never read
            "text_reader": TEXT_READER_VERSION if settings.text_layer != "never" else None,
        }
    )


def new_run_id() -> str:
    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()) + "-" + uuid.uuid4().hex[:8]


@dataclass
class StageContext:
    """One run's (or one Airflow task's) surroundings, handed to every stage.

    :param work: the work area (manifests, OCR results, records).
    :param run_id: the run the stage belongs to (``runs/<run_id>/`` in the work area).
    :param storage: the store documents are read from; None: chosen per URI (with ``s3_client``).
    :param s3_client: the boto3 client for ``s3://`` sources when ``storage`` is None.
    :param gcs_client: likewise a ``google.cloud.storage.Client`` for ``gs://`` sources, and
        ``azure_client`` a ``BlobServiceClient`` for Azure ones (None: from the environment).
    :param settings: rendering and OCR settings (the OCR stage's).
    """

    work: WorkArea
    run_id: str
    storage: Storage | None = None
    s3_client: Any = None
    settings: OcrSettings = field(default_factory=OcrSettings)
    gcs_client: Any = None
    azure_client: Any = None

    @cached_property
    def layout(self) -> WorkLayout:
        """Content-addressed paths (OCR results, records, review decisions)."""
        return WorkLayout(self.work)

    @cached_property
    def run_layout(self) -> RunLayout:
        """This run's manifests."""
        return RunLayout(self.work, self.run_id)

    def storage_of(self, uri: str) -> Storage:
        """The store to read ``uri`` from."""
        if self.storage is not None:
            return self.storage
        from airflow_provider_deepocr.core.sources import storage_for

        return storage_for(
            uri, s3_client=self.s3_client, gcs_client=self.gcs_client, azure_client=self.azure_client
        )
