"""Storage layer (bottom): data-directory layout, SQLite helpers, atomic Parquet/NumPy artifacts. Imports nothing of the package."""
