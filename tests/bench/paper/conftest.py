"""The paper figures draw prompt lengths from ../shared/datasets (Figures 8 and 11)."""

import pytest


@pytest.fixture(autouse=True, scope="module")
def _needs_prompt_sets(request):
    if request.module.__name__.rsplit(".", 1)[-1] != "test_flagship_profile":
        request.getfixturevalue("shared_datasets")
