"""Catalog layer: collections, every file's size/mtime/hash/status, folder scans and batches. Imports storage."""
