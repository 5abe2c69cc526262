"""SSL evidence (issue 11): linear-evaluation accuracy of encoders trained with CPC, PCC and D-RFC (and a
frozen random encoder of the same architecture) on offline MNIST and Fashion-MNIST, several seeds.

Each (dataset, objective, seed) is the README's commands, run in this process: ``pdlightning fit -c
configs/ssl/demo.yaml -c configs/ssl/objectives/<objective>.yaml`` (600 SSL steps of batch 128, a
CIFAR-style ResNet [16, 32, 64]), then ``fit`` / ``test`` of ``configs/linear_eval/demo.yaml`` on the
frozen encoder (3 epochs); Fashion-MNIST swaps the datamodule for ``FashionMNISTDataModule`` (Debian's
``dataset-fashion-mnist``). Writes a markdown table (mean ± std over seeds, and every seed) to ``--out``.

Usage: ``OMP_NUM_THREADS=1 python benchmarks/ssl_linear_eval.py --out docs/results/ssl_linear_eval.md
[--seeds 0 1 2] [--datasets mnist fashion_mnist]`` (CPU: about 10 minutes per seed and dataset per
objective on the shared 2-core machine).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
import warnings
from pathlib import Path

DATASETS = {"mnist": [], "fashion_mnist": ["--data.class_path=pdlightning.data.FashionMNISTDataModule"]}
OBJECTIVES = ("cpc", "pcc", "drfc")
LABELS = {
    "cpc": "CPC (`InfoNCE`)",
    "pcc": "PCC (`ProbabilisticClassifier`, balanced)",
    "drfc": "D-RFC (`DensityRatioFitting`)",
    "random": "random init, same architecture (frozen)",
}


def run(args: list[str], test: bool = False) -> dict[str, float]:
    from pdlightning.cli.main import build_cli

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cli = build_cli(args[1:] if args[:1] == ["fit"] else args, run=False)  # run=False parses no subcommand
        cli.trainer.fit(cli.model, datamodule=cli.datamodule)
        if not test:
            return {}
        return {
            k: float(v) for k, v in cli.trainer.test(cli.model, datamodule=cli.datamodule, verbose=False)[0].items()
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("docs/results/ssl_linear_eval.md"))
    parser.add_argument("--work", type=Path, default=Path("lightning_logs/ssl_evidence"))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--datasets", nargs="+", default=list(DATASETS), choices=list(DATASETS))
    parser.add_argument("--steps", type=int, default=600, help="SSL steps (the demo config's 600)")
    args = parser.parse_args()
    results_path = args.work / "accuracies.json"
    accuracies: dict[str, float] = json.loads(results_path.read_text()) if results_path.exists() else {}
    quiet = ["--trainer.enable_progress_bar=false", f"--trainer.logger.init_args.save_dir={args.work}"]
    for dataset in args.datasets:
        for seed in args.seeds:
            for objective in (*OBJECTIVES, "random"):
                key = f"{dataset}/{objective}/{seed}"
                if key in accuracies:
                    continue
                start = time.perf_counter()
                source = "cpc" if objective == "random" else objective
                ssl_dir = args.work / "ssl" / dataset / source / f"seed{seed}"
                ckpt = ssl_dir / "checkpoints" / "last.ckpt"
                if not ckpt.exists():
                    run(
                        [
                            "fit",
                            "-c",
                            "configs/ssl/demo.yaml",
                            "-c",
                            f"configs/ssl/objectives/{source}.yaml",
                            *DATASETS[dataset],
                            *quiet,
                            f"--seed_everything={seed}",
                            f"--trainer.max_steps={args.steps}",
                            f"--trainer.logger.init_args.name=ssl/{dataset}/{source}",
                            f"--trainer.logger.init_args.version=seed{seed}",
                        ]
                    )
                extra = ["--model.random_init=true"] if objective == "random" else []
                metrics = run(
                    [
                        "fit",
                        "-c",
                        "configs/linear_eval/demo.yaml",
                        *DATASETS[dataset],
                        *quiet,
                        *extra,
                        f"--seed_everything={seed}",
                        f"--model.ssl_checkpoint={ckpt}",
                        f"--trainer.logger.init_args.name=linear_eval/{dataset}/{objective}",
                        f"--trainer.logger.init_args.version=seed{seed}",
                    ],
                    test=True,
                )
                accuracies[key] = metrics["test/acc"]
                results_path.parent.mkdir(parents=True, exist_ok=True)
                results_path.write_text(json.dumps(accuracies, indent=1))
                print(f"{key}: {100 * accuracies[key]:.1f}% ({time.perf_counter() - start:.0f} s)", flush=True)
    lines = [
        "# Linear evaluation of contrastive SSL objectives (CPU budget)",
        "",
        f"Offline data, CIFAR-style ResNet [16, 32, 64], {args.steps} SSL steps of batch 128 per objective, a "
        "linear classifier on the frozen 64-d features for 3 epochs, test accuracy on the held-out test split; "
        f"seeds {', '.join(map(str, args.seeds))} (each seed: its own SSL run and linear run). Command: "
        f"`OMP_NUM_THREADS=1 python benchmarks/ssl_linear_eval.py --seeds {' '.join(map(str, args.seeds))} "
        f"--steps {args.steps} --datasets {' '.join(args.datasets)}`.",
        "",
    ]
    for dataset in args.datasets:
        header = "| encoder (frozen) | mean ± std | " + " | ".join(f"seed {s}" for s in args.seeds) + " |"
        lines += [
            f"## {dataset.replace('_', '-').replace('mnist', 'MNIST').replace('fashion', 'Fashion')}",
            "",
            header,
            "|---|---|" + "---|" * len(args.seeds),
        ]
        for objective in (*OBJECTIVES, "random"):
            values = [
                100 * accuracies[f"{dataset}/{objective}/{s}"]
                for s in args.seeds
                if f"{dataset}/{objective}/{s}" in accuracies
            ]
            if not values:
                continue
            spread = (
                f"{statistics.mean(values):.1f} ± {statistics.stdev(values):.1f}%"
                if len(values) > 1
                else (f"{values[0]:.1f}% (n = 1)")
            )
            lines.append(f"| {LABELS[objective]} | {spread} | " + " | ".join(f"{v:.1f}%" for v in values) + " |")
        lines.append("")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines))
    print(f"written {args.out}")


if __name__ == "__main__":
    main()
