import csv

import pytest
import torch
from torch import nn

from pdlightning.bounds import DV, ProbabilisticClassifier
from pdlightning.callbacks import PMIWriter, cross_scores
from pdlightning.critics import DotProductCritic, EncodedCritic, JointCritic, SeparableCritic
from pdlightning.encoders import ImageEncoder
from pdlightning.modules import MIEstimationModule


@pytest.mark.parametrize("bound", [ProbabilisticClassifier(), DV()])
def test_predict_step_is_the_diagonal_of_the_pmi_matrix(bound):
    torch.manual_seed(0)
    module = MIEstimationModule(JointCritic(3, 2, [8]), bound)
    x, y = torch.randn(6, 3), torch.randn(6, 2)
    out = module.predict_step({"x": x, "y": y, "index": torch.arange(6)}, 0)
    assert torch.allclose(out["pmi"], module(x, y).diagonal())
    assert torch.equal(out["index"], torch.arange(6))
    if bound.pmi_normalizer is None:  # a function of each score: one pair is enough
        single = module.predict_step({"x": x[:1], "y": y[:1]}, 0)["pmi"]
        assert single.shape == (1,) and torch.isfinite(single).all()
    else:  # in-batch statistics without a reference sample need two pairs
        with pytest.raises(ValueError, match="pmi_reference_size.*eval_batch_size"):
            module.predict_step({"x": x[:1], "y": y[:1]}, 0)


def test_pmi_writer_writes_one_row_per_pair(tmp_path):
    path = tmp_path / "out" / "pmi.csv"
    writer = PMIWriter(str(path))
    predictions = [
        {"pmi": torch.tensor([0.5, -1.0]), "index": torch.tensor([0, 1])},
        {"pmi": torch.tensor([2.0]), "index": torch.tensor([2])},
    ]
    writer.write_on_epoch_end(None, None, predictions, None)
    rows = list(csv.reader(open(path)))
    assert rows[0] == ["row", "index", "pmi"]
    assert [float(r[2]) for r in rows[1:]] == [0.5, -1.0, 2.0]


def test_cross_scores_fast_path_equals_pairwise_critic():
    torch.manual_seed(0)
    encoded = EncodedCritic(ImageEncoder(1, 8, 4, (), [8]), DotProductCritic(4), y_encoder=nn.Identity())
    x, classes = torch.rand(5, 1, 8, 8), torch.eye(4)
    fast = cross_scores(encoded, x, classes)
    slow = torch.stack([encoded.pointwise(x, classes[c].expand(5, 4)) for c in range(4)], dim=1)
    assert fast.shape == (5, 4) and torch.allclose(fast, slow, atol=1e-5)
    generic = SeparableCritic(3, 3, [8])
    a, b = torch.randn(4, 3), torch.randn(7, 3)
    gx, hy = generic.g(a), generic.h(b)
    assert torch.allclose(cross_scores(generic, a, b, chunk=5), gx @ hy.T, atol=1e-5)
