"""verigrad's version, at the bottom of the layers so that any module may read it (the
checker records it in reports and keys its on-disk rule cache with it)."""

__version__ = "0.1.0"
