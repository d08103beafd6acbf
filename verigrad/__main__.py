"""``python -m verigrad ...``: the same as the ``verigrad`` command (see :mod:`verigrad.cli`)."""
from .cli import main

if __name__ == "__main__":
    raise SystemExit(main())
