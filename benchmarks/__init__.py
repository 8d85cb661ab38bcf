"""Tools that measure ganx; not part of the installed package. ``python -m benchmarks.bench`` (``make bench``)."""
