"""curate: score training examples and keep the useful ones.

The command line (``curate ...``) is a thin layer over this library; every step is importable.
"""

__version__ = "0.1.0"
