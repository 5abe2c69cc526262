"""DDP-global negatives: 2 CPU processes (gloo) score the global batch, with the single-process loss
and gradients."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

from pdlightning.bounds import DV, DensityRatioFitting, InfoNCE, ProbabilisticClassifier
from pdlightning.critics import SeparableCritic
from pdlightning.distributed import all_gather_with_grad, release_process_group, world_size
from pdlightning.modules import ContrastiveSSLModule
from tests.conftest import free_port

WORLD = 2


def _module(bound: nn.Module) -> ContrastiveSSLModule:
    torch.manual_seed(0)  # identical weights on every rank and in the reference
    encoder = nn.Sequential(nn.Flatten(), nn.Linear(12, 16), nn.Tanh(), nn.Linear(16, 8))
    critic = SeparableCritic(8, 8, hidden_dims=[16], embed_dim=8)
    return ContrastiveSSLModule(encoder, critic, bound, num_classes=None)


BOUNDS = {"infonce": InfoNCE, "pcc": ProbabilisticClassifier, "drfc": DensityRatioFitting, "dv": DV}


def _worker(rank: int, port: int, all_sizes: list[list[int]]) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=WORLD)
    torch.set_num_threads(1)
    try:
        for sizes in all_sizes:
            _check(rank, sizes)
    finally:
        dist.destroy_process_group()


def _check(rank: int, sizes: list[int]) -> None:
    n = sum(sizes)
    generator = torch.Generator().manual_seed(1)
    x, y = torch.randn(n, 3, 4, generator=generator), torch.randn(n, 3, 4, generator=generator)
    y = y + 2 * x  # dependent views
    start = sum(sizes[:rank])
    local = slice(start, start + sizes[rank])

    # plain gather: values in rank order, gradient = this rank's slice of the summed upstream grads
    t = torch.full((sizes[rank], 2), float(rank), requires_grad=True)
    gathered = all_gather_with_grad(t)
    assert gathered.shape == (n, 2) and world_size() == WORLD
    torch.testing.assert_close(gathered[:, 0], torch.tensor([0.0] * sizes[0] + [1.0] * sizes[1]))
    (gathered * torch.arange(n, dtype=torch.float32).unsqueeze(1)).sum().backward()
    expected = WORLD * torch.arange(start, start + sizes[rank], dtype=torch.float32).unsqueeze(1).expand(-1, 2)
    torch.testing.assert_close(t.grad, expected)

    for name, bound_class in BOUNDS.items():
        reference = _module(bound_class())
        ref_scores = reference.critic(*reference.embed(x, y)[1:])
        ref_out = reference.contrastive_outputs(ref_scores)
        ref_out.loss.sum().backward()

        module = _module(bound_class())
        _, zx, zy = module.embed(x[local], y[local])
        scores = module.score_matrix(zx, zy)
        assert scores.shape == (n, n), f"{name}: gathered score matrix {tuple(scores.shape)} != global ({n}, {n})"
        output = module.contrastive_outputs(scores)
        torch.testing.assert_close(output.loss, ref_out.loss, msg=f"{name}: DDP loss != single-process loss")
        output.loss.sum().backward()
        for (pname, p), (_, q) in zip(module.named_parameters(), reference.named_parameters()):
            grad = p.grad.clone()
            dist.all_reduce(grad)  # what DDP does: average over processes
            torch.testing.assert_close(grad / WORLD, q.grad, msg=f"{name}: gradient of {pname}")


@pytest.mark.slow
def test_two_process_gather_gives_global_scores_loss_and_gradients() -> None:
    """Even (5 + 5) and uneven (6 + 3) per-process batches, four bounds (DV's partition is not a
    per-row mean: only the full global matrix gives the single-process loss)."""
    mp.start_processes(_worker, args=(free_port(), [[5, 5], [6, 3]]), nprocs=WORLD, join=True, start_method="spawn")


def test_release_process_group_destroys_the_group_and_is_a_no_op_without_one(tmp_path) -> None:
    release_process_group()  # nothing initialised: nothing to do
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
    assert dist.is_initialized()
    release_process_group()
    assert not dist.is_initialized()


def test_gather_is_identity_without_a_process_group() -> None:
    t = torch.randn(3, 2)
    assert all_gather_with_grad(t) is t and world_size() == 1


_TRAINER_SCRIPT = textwrap.dedent(
    """
    import json, sys, torch, lightning as L
    from pdlightning.bounds import InfoNCE
    from pdlightning.critics import SeparableCritic
    from pdlightning.data import DigitsDataModule
    from pdlightning.encoders import ResNetEncoder
    from pdlightning.distributed import release_process_group
    from pdlightning.modules import ContrastiveSSLModule

    class Record(L.Callback):
        def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
            self.n_scores = outputs["record"].joint.shape[1]

    torch.set_num_threads(1)
    L.seed_everything(0)
    encoder = ResNetEncoder("cifar", in_channels=1, widths=[4, 8])
    module = ContrastiveSSLModule(encoder, SeparableCritic(8, 8, [16], 8, normalize=True, temperature=0.5), InfoNCE())
    record = Record()
    trainer = L.Trainer(strategy="ddp", devices=2, accelerator="cpu", max_steps=2, logger=False,
                        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                        limit_val_batches=1, val_check_interval=2, num_sanity_val_steps=0,
                        callbacks=[record])
    trainer.fit(module, DigitsDataModule(batch_size=8))
    probe = [p.detach().flatten() for p in module.probe.parameters()]
    encoder = [p.detach().flatten() for p in module.encoder.parameters()]
    out = {"rank": trainer.global_rank, "n_scores": record.n_scores, "step": trainer.global_step,
           "probe": torch.cat(probe).tolist()[:50], "encoder": torch.cat(encoder).tolist()[:50],
           "val_probe_acc": float(trainer.callback_metrics["val/probe_acc"])}
    with open(sys.argv[1] + f"/rank{trainer.global_rank}.json", "w") as f:
        json.dump(out, f)
    release_process_group()  # as the CLI does: a gloo group alive at exit can abort the process
    """
)


@pytest.mark.slow
def test_lightning_ddp_trainer_uses_global_negatives(tmp_path) -> None:
    """A real ``Trainer(strategy="ddp", devices=2, accelerator="cpu")``: 8 images per process, 16 per row
    of the score matrix; parameters (encoder and the separately optimised probe) stay in sync."""
    import json

    script = tmp_path / "ddp_fit.py"
    script.write_text(_TRAINER_SCRIPT)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MASTER_PORT": str(free_port()), "PL_DISABLE_FORK": "1"}
    result = subprocess.run(
        [sys.executable, str(script), str(tmp_path)], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=240
    )
    assert result.returncode == 0, result.stderr[-3000:]
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(WORLD)]
    for r in ranks:
        assert r["n_scores"] == 16, "the score matrix must span the global batch (2 x 8)"
        assert r["step"] == 2
        assert 0.0 <= r["val_probe_acc"] <= 1.0
    torch.testing.assert_close(torch.tensor(ranks[0]["encoder"]), torch.tensor(ranks[1]["encoder"]))
    torch.testing.assert_close(torch.tensor(ranks[0]["probe"]), torch.tensor(ranks[1]["probe"]))
