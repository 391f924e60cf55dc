"""Generated sample photos (demo folder, test RAW files). Imports nothing of the package."""
