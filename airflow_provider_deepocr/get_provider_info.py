"""Provider metadata read by Airflow through the ``apache_airflow_provider`` entry point."""

from __future__ import annotations

from typing import Any


def get_provider_info() -> dict[str, Any]:
    from airflow_provider_deepocr import __version__

    return {
        "package-name": "airflow-provider-deepocr",
        "name": "DeepSeek-OCR",
        "description": "Documents in object storage -> DeepSeek-OCR on GPU workers -> validated rows in SQL "
        "warehouses.",
        "versions": [__version__],
        "integrations": [
            {
                "integration-name": "DeepSeek-OCR",
                "external-doc-url": "https://github.com/deepseek-ai/DeepSeek-OCR",
                "tags": ["software"],
            }
        ],
        "hooks": [
            {
                "integration-name": "DeepSeek-OCR",
                "python-modules": [
                    "airflow_provider_deepocr.hooks.deepseek",
                    "airflow_provider_deepocr.hooks.resources",
                ],
            }
        ],
        "operators": [
            {
                "integration-name": "DeepSeek-OCR",
                "python-modules": ["airflow_provider_deepocr.operators.deepocr"],
            }
        ],
        "connection-types": [
            {
                "connection-type": "deepseek_ocr",
                "hook-class-name": "airflow_provider_deepocr.hooks.deepseek.DeepSeekOCRHook",
                "hook-name": "DeepSeek-OCR",
            }
        ],
    }
