"""Sharing trained bundles between hospitals: zoo checks, packaging, checksums, config review.

Imported by the scripts only (never by the configs), so a received bundle does not need it to run.
"""
