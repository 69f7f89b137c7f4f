"""Hypothesis settings of the property-based tests (``tests/test_property_*.py``).

The ``ci`` profile (the default) keeps the fast suite's property tests under a minute in
all: few examples per test, no deadline (a 2-core CI box is slow and noisy), derandomized
so a CI run is reproducible, and no example database written into the repository.
``HYPOTHESIS_PROFILE=thorough`` runs ten times as many examples, randomized, for a local
hunt; a failure prints the example to add as an explicit test.
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

_COMMON = {"deadline": None, "database": None, "suppress_health_check": [HealthCheck.too_slow,
                                                                          HealthCheck.function_scoped_fixture,
                                                                          HealthCheck.data_too_large]}
settings.register_profile("ci", derandomize=True, print_blob=True, **_COMMON)
settings.register_profile("thorough", derandomize=False, print_blob=True, **_COMMON)
PROFILE = os.environ.get("HYPOTHESIS_PROFILE", "ci")
settings.load_profile(PROFILE)
SCALE = 10 if PROFILE == "thorough" else 1


def examples(n: int) -> settings:
    """The settings of one property test: ``n`` examples under ``ci``, ten times that under ``thorough``."""
    return settings(max_examples=n * SCALE)
