"""PyTorch-compatible ``repr`` of numpy arrays.

Reimplements the algorithm of ``torch/_tensor_str.py`` (PyTorch 2.13) for
strided CPU tensors and the default print options, so that
``format_tensor(a, suffixes)`` is byte-identical to ``repr(torch.tensor(a))``
(with ``torch.`` spelled ``verigrad.`` in the suffixes).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

# PyTorch's default print options.
PRECISION = 4
THRESHOLD = 1000  # more elements than this -> summarize with "..."
EDGEITEMS = 3
LINEWIDTH = 80

_PREFIX = "tensor("


class _Formatter:
    """Chooses one number style and column width for a whole (real) tensor."""

    def __init__(self, data: np.ndarray):
        self.floating = data.dtype.kind == "f"
        self.int_mode = True  # all finite floats integral -> print "1." style
        self.sci_mode = False
        self.width = 1
        if not self.floating:  # integers and bools: width of their str()
            for v in data.ravel().tolist():
                self.width = max(self.width, len(str(v)))
            return
        # float16/float32 -> float64 is exact, and torch formats every element
        # through .item() (a Python float), so formatting the float64 copy gives
        # the same digits; torch also computes its min/max ratio in double.
        with np.errstate(invalid="ignore"):  # signalling NaNs warn on cast
            vals = data.astype(np.float64).ravel()
        vals = vals[np.isfinite(vals) & (vals != 0)]
        if vals.size == 0:  # only zeros/nan/inf: keep the int-mode defaults
            return
        lo, hi = float(np.abs(vals).min()), float(np.abs(vals).max())
        self.int_mode = bool(np.all(vals == np.ceil(vals)))
        self.sci_mode = hi / lo > 1000.0 or hi > 1.0e8 or lo < 1.0e-4
        if self.sci_mode:
            spec, extra = f".{PRECISION}e", 0
        elif self.int_mode:
            spec, extra = ".0f", 1  # +1 for the trailing "."
        else:
            spec, extra = f".{PRECISION}f", 0
        # Only nonzero finite values count: "nan"/"inf"/"0." may be misaligned,
        # exactly as in torch.
        self.width = max(len(format(v, spec)) for v in vals.tolist()) + extra

    def format(self, v) -> str:
        if not self.floating:
            s = str(v)
        elif self.sci_mode:
            s = format(v, f"{self.width}.{PRECISION}e")
        elif self.int_mode:
            s = format(v, ".0f")
            if np.isfinite(v):
                s += "."
        else:
            s = format(v, f".{PRECISION}f")
        return s.rjust(self.width)


def _summarized(a: np.ndarray) -> np.ndarray:
    """The elements that remain visible after summarization (torch's
    get_summarized_data): the formatter's width is computed from these only."""
    if a.ndim == 0:
        return a
    if a.ndim == 1:
        return np.concatenate((a[:EDGEITEMS], a[-EDGEITEMS:])) if len(a) > 2 * EDGEITEMS else a
    rows = [*a[:EDGEITEMS], *a[-EDGEITEMS:]] if len(a) > 2 * EDGEITEMS else list(a)
    return np.stack([_summarized(r) for r in rows])


def _body(a: np.ndarray) -> str:
    """The bracketed contents (torch's _tensor_str), for a non-empty array."""
    summarize = a.size > THRESHOLD
    visible = _summarized(a) if summarize else a
    if a.dtype.kind == "c":
        # Real and imaginary parts get independent formatters (widths/modes).
        re_fmt, im_fmt = _Formatter(visible.real), _Formatter(visible.imag)

        def fmt(v):
            im = (im_fmt.format(v.imag) + "j").lstrip()
            return re_fmt.format(v.real) + (im if im[0] in "+-" else "+" + im)

        elem_len = re_fmt.width + 2 + im_fmt.width + 1  # ", " and the "j"
    else:
        formatter = _Formatter(visible)
        fmt = formatter.format
        elem_len = formatter.width + 2  # ", "

    def rec(x: np.ndarray, indent: int) -> str:
        if x.ndim == 0:
            return fmt(x.item())
        cut = summarize and len(x) > 2 * EDGEITEMS
        if x.ndim == 1:
            if cut:
                items = [fmt(v) for v in x[:EDGEITEMS].tolist()] + [" ..."]
                items += [fmt(v) for v in x[-EDGEITEMS:].tolist()]
            else:
                items = [fmt(v) for v in x.tolist()]
            # Wrap at the line width; the width estimate ignores the final ")".
            per_line = max(1, (LINEWIDTH - indent) // elem_len)
            lines = [", ".join(items[i : i + per_line]) for i in range(0, len(items), per_line)]
            return "[" + (",\n" + " " * (indent + 1)).join(lines) + "]"
        if cut:
            parts = [rec(x[i], indent + 1) for i in range(EDGEITEMS)] + ["..."]
            parts += [rec(x[i], indent + 1) for i in range(len(x) - EDGEITEMS, len(x))]
        else:
            parts = [rec(r, indent + 1) for r in x]
        # Sub-blocks are separated by ndim-1 newlines (blank lines between matrices).
        return "[" + ("," + "\n" * (x.ndim - 1) + " " * (indent + 1)).join(parts) + "]"

    return rec(a, len(_PREFIX))


def _add_suffixes(text: str, suffixes: Sequence[str]) -> str:
    """Append suffixes, moving one to a new line when it would pass the line width."""
    # torch's own (slightly off-by-one) estimate of the current line length.
    last = len(text) - text.rfind("\n") + 1
    out = [text]
    for suffix in suffixes:
        # Measure "verigrad.float64" as torch measures "torch.float64", so the
        # line breaks fall where torch puts them (lines may run 3 chars longer).
        n = len(suffix.replace("verigrad.", "torch."))
        if last + n + 2 > LINEWIDTH:
            out.append(",\n" + " " * len(_PREFIX) + suffix)
            last = len(_PREFIX) + n
        else:
            out.append(", " + suffix)
            last += n + 2
    return "".join(out) + ")"


def format_tensor(data: np.ndarray, suffixes: Sequence[str] = ()) -> str:
    """Return the PyTorch-style repr 'tensor(...)' of data, with ', '-joined suffixes appended inside the parentheses
    (e.g. suffixes=["dtype=verigrad.float64", "requires_grad=True"] or ["grad_fn=<AddBackward0>"])."""
    data = np.asarray(data)
    suffixes = list(suffixes)
    if data.size == 0:
        # torch shows the shape of empty tensors unless it is (0,), before all
        # other suffixes. It also shows the dtype of every empty tensor that is
        # not float32 (int64, bool and complex64 included, whose dtype it hides
        # otherwise), so add it when the caller followed the non-empty rule.
        extra = [] if data.ndim == 1 else [f"size={tuple(int(n) for n in data.shape)}"]
        if data.dtype != np.float32 and not any(s.startswith("dtype=") for s in suffixes):
            extra.append(f"dtype=verigrad.{data.dtype.name}")
        return _add_suffixes(_PREFIX + "[]", extra + suffixes)
    return _add_suffixes(_PREFIX + _body(data), suffixes)
