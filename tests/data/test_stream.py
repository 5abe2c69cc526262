import pytest
import torch

from pdlightning.data import CorrelatedGaussianDataModule, OneHotDataModule
from pdlightning.data.stream import StreamLoader


@pytest.mark.parametrize(
    "make",
    [
        lambda: CorrelatedGaussianDataModule(dim=2, mi_schedule=[1.0, 2.0], steps_per_level=5, batch_size=4),
        lambda: OneHotDataModule(num_classes=4, batch_size=4, steps=10),
    ],
)
def test_a_resumed_stream_keeps_the_epoch_length_and_continues_at_its_step(make):
    fresh = list(make().train_dataloader())
    stream = make().train_stream
    stream.start_step = 6
    assert len(stream) == 10  # Lightning's restored batch counter and the stream end together
    resumed = list(stream)
    assert len(resumed) == 4
    assert all(torch.equal(a["x"], b["x"]) for a, b in zip(fresh[6:], resumed))


def test_stream_loader_state_round_trip_and_changed_settings_warn():
    source = OneHotDataModule(num_classes=4, batch_size=4, steps=10)
    loader = StreamLoader(source.train_stream, position=lambda: 7)
    state = loader.state_dict()
    target = OneHotDataModule(num_classes=4, batch_size=4, steps=10)
    StreamLoader(target.train_stream).load_state_dict(state)
    assert target.train_stream.start_step == 7
    other = OneHotDataModule(num_classes=5, batch_size=4, steps=10)
    with pytest.warns(UserWarning, match="num_classes"):
        StreamLoader(other.train_stream).load_state_dict(state)
