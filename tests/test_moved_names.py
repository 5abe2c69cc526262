"""Names that moved keep working at their old import path (and as ``class_path``) for one release,
with a warning that says where they went."""

import pytest

import pdlightning.applications
import pdlightning.callbacks
import pdlightning.critics
import pdlightning.encoders
import pdlightning.nn


@pytest.mark.parametrize(
    "old_module, name, new_module",
    [
        (pdlightning.critics, "ImageEncoder", pdlightning.encoders),
        (pdlightning.critics, "mlp", pdlightning.nn),
        (pdlightning.applications, "PMIWriter", pdlightning.callbacks),
        (pdlightning.applications, "CrossModalRetrieval", pdlightning.callbacks),
        (pdlightning.applications, "NearestNeighbourAccuracy", pdlightning.callbacks),
    ],
)
def test_old_path_resolves_with_a_warning(old_module, name, new_module):
    with pytest.warns(FutureWarning, match=rf"{old_module.__name__}\.{name} moved to {new_module.__name__}\.{name}"):
        assert getattr(old_module, name) is getattr(new_module, name)


def test_unknown_names_still_fail():
    with pytest.raises(AttributeError, match="has no attribute 'NotAThing'"):
        pdlightning.critics.NotAThing  # noqa: B018
