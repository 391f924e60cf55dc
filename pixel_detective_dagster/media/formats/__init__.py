"""Format-specific decoding behind ``imaging``: container sniffing, optional plugins, camera RAW, EXIF."""
