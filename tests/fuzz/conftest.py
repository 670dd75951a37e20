"""Hypothesis profiles of the fuzzing suite (the h11 invariant: garbage in yields only our typed error).

``fuzz-ci`` (the default) runs each target a bounded number of examples so
the whole suite stays under about 90 s; ``YAGNA_FUZZ=long`` selects
``fuzz-long`` for on-demand runs. The profiles are applied per test through
:data:`tests.fuzz.strategies.FUZZ` rather than loaded, because loading a
profile is global and would change every other hypothesis test in the
session; they inherit the session's default (``ci`` under CI: derandomized).
"""

from __future__ import annotations

from hypothesis import HealthCheck, settings

_SUPPRESS = [HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much,
             HealthCheck.function_scoped_fixture]

settings.register_profile("fuzz-ci", parent=settings.default, max_examples=150, deadline=None,
                          suppress_health_check=_SUPPRESS)
settings.register_profile("fuzz-long", parent=settings.default, max_examples=5000, deadline=None,
                          suppress_health_check=_SUPPRESS)
