"""Data: from per-sample inputs (and, later, manifests) to static-shape batches."""
