"""Test-session order: the smoke run of the whole recipe first.

``tests/run_tests.sh`` runs the suite on two pytest-xdist workers, one test file at a
time per worker (``--dist loadfile``), in collection order.  The smoke file is most of
the suite's time (a ~7-minute recipe run and the runs that continue it), so it is
collected first: one worker starts it at once while the other takes every other file.
Collected last (its alphabetical place), it would start only after the unit tests and
the suite would take their time plus its own.
"""
from __future__ import annotations

from typing import List

import pytest

FIRST = "test_recipe_smoke.py"


def pytest_collection_modifyitems(items: List[pytest.Item]) -> None:
    items.sort(key=lambda item: item.path.name != FIRST)  # stable: the rest keep their order
