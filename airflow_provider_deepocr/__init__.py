"""airflow-provider-deepocr: documents in object storage -> DeepSeek-OCR -> validated warehouse rows.

Importing this package is cheap: no Airflow, torch, transformers or Great Expectations import here.
"""

__version__ = "0.1.0"
