"""What the synthetic MaskGAN demo (``make train-maskgan`` without DATA) must show, measured at the end of the run.

:class:`SyntheticDemoReport` (configured in ``experiments/configs/maskgan_synthetic_64.yaml``) runs when
training ends and prints, on the validation split:

* the EMA DMN's reconstruction L1 (each validation mask rendered in its own face's style) against the
  **mean-face baseline** (the mean training face, which ignores the mask and the style); the demo's target is
  a ratio of at most 0.6;
* how often a **synthetic-trained parser** (a small U-Net fitted here on the training faces, for
  ``parser_steps`` batches) finds the target mask in the generated faces, against how often it finds it in
  the real validation faces (target: at least 0.9 of it), and against how often the **per-pixel majority
  mask** of the training masks agrees with the target (the generated faces must clearly beat it).

The numbers are also written to ``<run dir>/demo_report.json`` and logged as ``demo/<name>``.

The judge parser needs only the training faces, not the GAN, so with ``background=True`` (the synthetic config)
it is fitted on a second Python thread from the start of training: the GAN runs at one torch thread
(``run.cpu_threads=1``) on one core and the judge on the other, and the report at the end only renders and
scores. Torch ops release the GIL, and the judge touches no global RNG (its training faces are stacked on the
main thread under a fixed seed, its batches come from its own generator), so the GAN's numbers are those of a
run without the judge and the judge's are the same as when fitted at the end.
"""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.data import Dataset

from datamodules.labels import NUM_CELEBAMASK_CLASSES

TARGET_L1_RATIO = 0.6
TARGET_PARSER_RATIO = 0.9


def _stack(dataset: Dataset, limit: int) -> tuple[Tensor, Tensor]:
    items = [dataset[i] for i in range(min(limit, len(dataset)))]  # type: ignore[arg-type]
    return torch.stack([item["image"] for item in items]), torch.stack([item["label"] for item in items])


def new_judge_parser(seed: int = 0) -> torch.nn.Module:
    """The judge: a small U-Net :class:`FaceParser`, initialised from ``seed`` (the caller's RNG untouched)."""
    from portrait_models.parsing import FaceParser

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return FaceParser(unet_feature_scale=8, lr=1e-3)


def train_judge_parser(
    images: Tensor,
    labels: Tensor,
    steps: int,
    seed: int = 0,
    parser: torch.nn.Module | None = None,
    stop: threading.Event | None = None,
) -> torch.nn.Module:
    """Fits ``parser`` (default :func:`new_judge_parser`) to (images, labels) for ``steps`` batches of 16 (Adam
    1e-3), drawing the batches from its own generator; uses no global RNG. Returns early once ``stop`` is set."""
    generator = torch.Generator().manual_seed(seed)
    parser = parser if parser is not None else new_judge_parser(seed)
    optimizer = torch.optim.Adam(parser.parameters(), lr=1e-3)
    parser.train()
    for _ in range(steps):
        if stop is not None and stop.is_set():
            break
        index = torch.randint(0, len(images), (16,), generator=generator)
        loss = sum(parser._loss_terms(images[index], labels[index]).values())
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return parser.eval().requires_grad_(False)


def training_faces(train: Dataset, max_images: int, seed: int = 0) -> tuple[Tensor, Tensor]:
    """The first ``max_images`` training faces and masks, drawn (flips included) under ``seed``."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return _stack(train, max_images)


@torch.no_grad()
def demo_numbers(
    module: Any,
    train: Dataset,
    val: Dataset,
    parser_steps: int = 300,
    max_images: int = 256,
    judge: torch.nn.Module | None = None,
) -> dict[str, float]:
    """The demo's numbers (see the module docstring) for a MaskGAN ``module`` and its train / val splits;
    ``judge``: a judge parser already fitted to :func:`training_faces` (else it is fitted here)."""
    train_images, train_labels = training_faces(train, max_images)
    val_images, val_labels = _stack(val, max_images)
    device = next(module.parameters()).device
    module.eval()
    fakes = torch.cat([
        module.metric_samples({"image": x.to(device), "label": y.to(device)})["fake"].cpu()
        for x, y in zip(val_images.split(16), val_labels.split(16), strict=True)
    ])  # fmt: skip
    mean_face = train_images.mean(0, keepdim=True).expand_as(val_images)
    l1, mean_l1 = F.l1_loss(fakes, val_images).item(), F.l1_loss(mean_face, val_images).item()
    majority = F.one_hot(train_labels, NUM_CELEBAMASK_CLASSES).sum(0).argmax(-1)
    if judge is None:
        with torch.enable_grad():
            judge = train_judge_parser(train_images, train_labels, parser_steps)
    parser = judge
    real = (parser(val_images).argmax(1) == val_labels).float().mean().item()
    generated = (parser(fakes).argmax(1) == val_labels).float().mean().item()
    return {
        "ema_l1": l1,
        "mean_face_l1": mean_l1,
        "l1_ratio": l1 / max(mean_l1, 1e-8),
        "parser_on_generated": generated,
        "parser_on_real": real,
        "parser_ratio": generated / max(real, 1e-8),
        "majority_mask_agreement": (majority == val_labels).float().mean().item(),
        "val_images": float(len(val_images)),
    }


def format_numbers(numbers: dict[str, float]) -> str:
    ok = "meets" if numbers["l1_ratio"] <= TARGET_L1_RATIO else "MISSES"
    ok2 = "meets" if numbers["parser_ratio"] >= TARGET_PARSER_RATIO else "MISSES"
    return "\n".join([
        f"MaskGAN synthetic demo, {int(numbers['val_images'])} validation faces:",
        f"  EMA reconstruction L1 {numbers['ema_l1']:.3f} vs mean face {numbers['mean_face_l1']:.3f}: "
        f"ratio {numbers['l1_ratio']:.2f} ({ok} <= {TARGET_L1_RATIO})",
        f"  parser finds the target mask on generated faces {numbers['parser_on_generated']:.3f}, on real faces "
        f"{numbers['parser_on_real']:.3f}: ratio {numbers['parser_ratio']:.2f} ({ok2} >= {TARGET_PARSER_RATIO}); "
        f"per-pixel majority mask {numbers['majority_mask_agreement']:.3f}",
    ])  # fmt: skip


class _JudgeThread(threading.Thread):
    """Fits the judge parser while the GAN trains; :meth:`result` joins and returns it (or re-raises)."""

    def __init__(self, images: Tensor, labels: Tensor, steps: int) -> None:
        super().__init__(name="maskgan-demo-judge", daemon=True)
        self.images, self.labels, self.steps = images, labels, steps
        self.parser = new_judge_parser()
        self.error: BaseException | None = None
        self.stop = threading.Event()

    def run(self) -> None:
        try:
            with torch.enable_grad():
                train_judge_parser(self.images, self.labels, self.steps, parser=self.parser, stop=self.stop)
        except BaseException as error:  # re-raised on the main thread by result()
            self.error = error

    def result(self) -> torch.nn.Module:
        self.join()
        if self.error is not None:
            raise RuntimeError("the demo's judge parser failed to train") from self.error
        return self.parser

    def cancel(self) -> None:
        """Stops the fit after its current batch and waits for it (a thread still inside torch when the
        interpreter exits aborts the process)."""
        self.stop.set()
        self.join()


class SyntheticDemoReport(pl.Callback):
    """Prints (and writes to ``<run dir>/demo_report.json``) the demo's numbers when training ends.

    Args:
        parser_steps: batches of 16 for the judge parser fitted on the training faces.
        max_images: at most this many training / validation faces are used.
        background: fit the judge on a second thread from the start of training (needs a free core: the GAN
            should run with ``run.cpu_threads`` one fewer than the cores); False fits it at the end.
    """

    def __init__(self, parser_steps: int = 300, max_images: int = 256, background: bool = False) -> None:
        self.parser_steps, self.max_images, self.background = parser_steps, max_images, background
        self.numbers: dict[str, float] = {}
        self._judge: _JudgeThread | None = None

    @staticmethod
    def _reports(trainer: pl.Trainer) -> bool:
        return not trainer.sanity_checking and trainer.is_global_zero and trainer.datamodule is not None

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.background and self._reports(trainer):
            images, labels = training_faces(trainer.datamodule.datasets["train"], self.max_images)
            self._judge = _JudgeThread(images, labels, self.parser_steps)
            self._judge.start()

    def _cancel_judge(self) -> None:
        if self._judge is not None:
            self._judge.cancel()
            self._judge = None

    def on_exception(self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException) -> None:
        self._cancel_judge()  # interrupted (preempted, failed): no report, and no thread left behind

    def teardown(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        self._cancel_judge()

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not self._reports(trainer):
            return
        judge, self._judge = (self._judge.result() if self._judge is not None else None), None
        datasets = trainer.datamodule.datasets
        self.numbers = demo_numbers(
            pl_module, datasets["train"], datasets["val"], self.parser_steps, self.max_images, judge
        )
        print(format_numbers(self.numbers), flush=True)
        root = Path(trainer.default_root_dir)
        root.mkdir(parents=True, exist_ok=True)
        (root / "demo_report.json").write_text(json.dumps(self.numbers, indent=2) + "\n")
