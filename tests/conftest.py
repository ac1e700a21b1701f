"""Shared pytest configuration: hypothesis profiles.

Profiles: ``dev`` (default, 50 examples), ``ci`` (fewer examples, no deadline; chosen when
``CI`` is set) and ``thorough`` (1000 examples). ``HYPOTHESIS_PROFILE`` overrides the choice.
"""

from __future__ import annotations

import os

import pytest
from hypothesis import HealthCheck, settings

settings.register_profile("dev", max_examples=50, deadline=None)
settings.register_profile(
    "ci", max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow],
    print_blob=True,
)
settings.register_profile("thorough", max_examples=1000, deadline=None)

_default = "ci" if os.environ.get("CI") else "dev"
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", _default))


@pytest.fixture
def triton_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
                 ) -> None:
    """Generated Triton kernel modules in the session's temporary folder (the Triton test
    files use it for every test: ``pytest.mark.usefixtures("triton_cache")``)."""
    monkeypatch.setenv("PCCC_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "cache"))
