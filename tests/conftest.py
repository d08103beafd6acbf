"""Hypothesis settings for verigrad's own suite.

Hypothesis loads its built-in ``ci`` profile when ``CI`` (or a vendor's CI variable) is set
and ``default`` otherwise. Both are extended here, never replaced, so ``ci`` keeps what it is
for (derandomized, no example database, no deadline, printed reproduction blobs):

- ``verigrad-ci``: ``ci`` with fewer examples, so the suite stays fast on a 2-core runner;
- ``verigrad-dev``: ``default`` with a moderate example count and no deadline (a gradient
  check's first call pays for SymPy imports and lambdification; deadlines would be flaky).

``--hypothesis-profile=NAME`` (or ``HYPOTHESIS_PROFILE=NAME``) still picks any profile, e.g.
``--hypothesis-profile=verigrad-thorough`` for a long local run. Tests that set their own
``@settings(max_examples=...)`` keep it.
"""
from __future__ import annotations

import atexit
import os
import shutil
import tempfile

from hypothesis import settings

# the suite never reads or writes the user's rule cache (verigrad/symbolic/rule_cache.py):
# one scratch directory per test process, inherited by the CLI subprocesses, removed at exit
_RULE_CACHE = tempfile.mkdtemp(prefix="verigrad-test-rules-")
os.environ["VERIGRAD_CACHE_DIR"] = _RULE_CACHE
atexit.register(shutil.rmtree, _RULE_CACHE, True)

_CI = settings.get_profile("ci")
_DEFAULT = settings.get_profile("default")

# everything else (derandomize, database=None, deadline=None, print_blob, the too_slow
# suppression) is inherited from ci
settings.register_profile("verigrad-ci", parent=_CI, max_examples=30)
settings.register_profile("verigrad-dev", parent=_DEFAULT, max_examples=40, deadline=None)
settings.register_profile("verigrad-thorough", parent=_DEFAULT, max_examples=1000,
                          deadline=None)

_chosen = os.environ.get("HYPOTHESIS_PROFILE")
if _chosen:
    settings.load_profile(_chosen)
elif settings.get_current_profile_name() == "ci":
    settings.load_profile("verigrad-ci")
else:
    settings.load_profile("verigrad-dev")
