"""Test-wide settings.

Under CI (``CI`` set) hypothesis runs derandomized: the same examples every
run, so a submission lands or fails on its own merits. Locally every run
explores new examples; a counterexample found there becomes a pinned test.
"""

import os

from hypothesis import settings

settings.register_profile("ci", derandomize=True, deadline=None, print_blob=True)
if os.environ.get("CI"):
    settings.load_profile("ci")
