"""The review app: quarantined and flagged documents, their page images with boxes, and decisions."""
