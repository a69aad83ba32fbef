"""Pieces every editor tab shares: checkpoint lookup, the mask canvas <-> label map, images, messages.

Nothing here imports Gradio at module level, so the conversions are testable without it (and cheap to import).
"""

from __future__ import annotations

import html
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from datamodules.labels import CELEBAMASK_CLASSES, CELEBAMASK_PALETTE, label_to_color, snap_to_palette

# The mask canvas is shown at this size whatever the model's resolution (a 64² mask is painted 8x enlarged).
CANVAS = 512
RUNS = Path("runs")  # where `make train-<model>` writes its runs (the default checkpoints)


# ------------------------------------------------------------------------------------------ checkpoints
@dataclass(frozen=True)
class TabSpec:
    """What the page needs to know about one model to find and describe its checkpoint."""

    title: str  # tab title, e.g. "MaskGAN"
    experiment: str  # the experiment that `make train-<paper>` runs without DATA
    train_command: str  # e.g. "make train-maskgan"


def default_checkpoint(spec: TabSpec, runs: Path = RUNS) -> Path | None:
    """The newest ``runs/<experiment>/*/checkpoints/last.ckpt`` of the tab's training command, if any."""
    from experiments.train import find_last_checkpoint

    try:
        return find_last_checkpoint(runs, spec.experiment)
    except ValueError:
        return None


def no_checkpoint_message(spec: TabSpec, runs: Path = RUNS) -> str:
    return (
        f"No {spec.title} checkpoint given and none found under `{runs / spec.experiment}/`. Train one with "
        f"`{spec.train_command}` (synthetic faces, CPU) or start the editor with "
        f"`make editor CKPT=path/to/{spec.experiment}.ckpt`, or enter a checkpoint path above."
    )


class ModelCache:
    """Loaded models by (path, mtime): one copy per checkpoint, shared by every browser session."""

    def __init__(self, loader: Callable[[Path, str], Any], device: str) -> None:
        self.loader, self.device, self._models = loader, device, {}

    def get(self, path: str | Path) -> Any:
        path = Path(path).expanduser()
        if not path.exists():  # a file, or a folder (Gu et al.'s official checkpoints)
            raise FileNotFoundError(f"checkpoint not found: {path}")
        key = (str(path.resolve()), path.stat().st_mtime_ns)
        if key not in self._models:
            self._models[key] = self.loader(path, self.device)
        return self._models[key]


def error_message(err: BaseException, what: str) -> str:
    """One line for the page (never a traceback): what failed and why."""
    reason = str(err) or type(err).__name__
    if isinstance(err, (KeyError, RuntimeError, TypeError, AttributeError)) and "state_dict" not in reason:
        reason = f"{type(err).__name__}: {reason}"
    return f"**{what} failed:** {reason}"


def load_message(spec: TabSpec, cache: ModelCache, path: str | None) -> tuple[Any, str]:
    """The model of ``path`` (or of the newest run under ``RUNS``) and a status line; (None, why) on failure."""
    if not path:
        found = default_checkpoint(spec, RUNS)
        if found is None:
            return None, no_checkpoint_message(spec, RUNS)
        path = str(found)
    try:
        model = cache.get(path)
    except Exception as err:  # a wrong file must become a message in the page, whatever the loader raised
        return None, error_message(err, f"Loading `{path}` as a {spec.title} checkpoint")
    return model, f"Loaded `{path}` ({describe_device(model)})."


def describe_device(model: Any) -> str:
    try:
        return str(next(model.parameters()).device)
    except (AttributeError, StopIteration):
        return "cpu"


# ------------------------------------------------------------------------------------------- images
def tensor_to_uint8(image: torch.Tensor) -> np.ndarray:
    """(1, 3, H, W) or (3, H, W) in [-1, 1] -> (H, W, 3) uint8, rounded as ``editing.save_image`` does."""
    image = image.detach().float().cpu().reshape(-1, *image.shape[-3:])[0].clamp(-1, 1)
    return ((image + 1) * 127.5).round().to(torch.uint8).permute(1, 2, 0).numpy()


def uint8_to_tensor(array: np.ndarray, size: int) -> torch.Tensor:
    """(H, W, 3|4) uint8 -> (1, 3, size, size) in [-1, 1] (bilinear resize)."""
    image = Image.fromarray(np.asarray(array)[..., :3].astype(np.uint8)).resize((size, size), Image.BILINEAR)
    return torch.from_numpy(np.asarray(image).copy()).permute(2, 0, 1).float().div(127.5).sub(1).unsqueeze(0)


def enlarge(array: np.ndarray, size: int = CANVAS) -> np.ndarray:
    """An image or label map enlarged to ``size`` for display (nearest, so labels stay labels)."""
    return np.asarray(Image.fromarray(np.asarray(array).astype(np.uint8)).resize((size, size), Image.NEAREST))


# ------------------------------------------------------------------------------------------ the mask canvas
def palette_hex() -> list[str]:
    """The brush colours, one per class in the official order (index = label)."""
    return [f"#{r:02x}{g:02x}{b:02x}" for r, g, b in CELEBAMASK_PALETTE]


def legend_html(names: tuple[str, ...] = CELEBAMASK_CLASSES, colors: list[str] | None = None) -> str:
    """The class names beside their brush colours, in the order of the brush swatches."""
    colors = palette_hex() if colors is None else colors
    cells = "".join(
        f'<span class="pg-class" title="label {i}"><span class="pg-swatch" style="background:{color}"></span>'
        f"{i} {html.escape(name)}</span>"
        for i, (name, color) in enumerate(zip(names, colors))
    )
    return f'<div class="pg-legend">{cells}</div>'


LEGEND_CSS = """
.pg-legend {display:flex; flex-wrap:wrap; gap:4px 12px; font-size:0.85em}
.pg-class {display:inline-flex; align-items:center; gap:4px}
.pg-swatch {width:14px; height:14px; border:1px solid #8888; display:inline-block}
"""


def canvas_value(label: np.ndarray) -> dict[str, Any]:
    """An ImageEditor value whose background is ``label`` in the palette, enlarged to the canvas, no strokes."""
    background = enlarge(label_to_color(label))
    return {"background": background, "layers": [], "composite": background}


def canvas_to_label(value: dict[str, Any] | None, size: int, alpha_threshold: int = 128) -> np.ndarray:
    """The label map (size, size) painted on the canvas.

    The background (the mask as loaded, or a colour mask the user dropped on the canvas) snaps to the nearest
    palette colour; every stroke layer paints the nearest class of its colour where its alpha is at least
    ``alpha_threshold`` (anti-aliased stroke edges: opaque enough -> the brush class, else the mask below).
    The canvas is then reduced to ``size`` by nearest sampling.
    """
    if value is None or value.get("background") is None:
        raise ValueError("the mask canvas is empty: load a face and its mask first")
    background = np.asarray(value["background"])
    label = snap_to_palette(background[..., :3])
    if background.ndim == 3 and background.shape[2] == 4:
        label[background[..., 3] < alpha_threshold] = 0  # a cleared canvas is background
    for layer in value.get("layers") or []:
        layer = np.asarray(layer)
        if layer.ndim != 3 or layer.shape[2] != 4 or layer.shape[:2] != label.shape:
            raise ValueError(f"unexpected stroke layer of shape {layer.shape}; the canvas is {label.shape}")
        painted = layer[..., 3] >= alpha_threshold
        if painted.any():
            label[painted] = snap_to_palette(layer[painted][None, :, :3], max_far_fraction=1.0)[0]
    return np.asarray(Image.fromarray(label.astype(np.uint8)).resize((size, size), Image.NEAREST)).astype(np.int64)


def save_edit(out_dir: Path, stem: str, result: np.ndarray, label: np.ndarray) -> list[Path]:
    """Write the rendered face and the edited mask (label PNG in the official order + colour PNG)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = [out_dir / f"{stem}_result.png", out_dir / f"{stem}_mask_label.png", out_dir / f"{stem}_mask_color.png"]
    Image.fromarray(result).save(paths[0])
    Image.fromarray(label.astype(np.uint8)).save(paths[1])
    Image.fromarray(label_to_color(label)).save(paths[2])
    return paths


def require_model(spec: TabSpec, cache: ModelCache, path: str | None) -> Any:
    """The model for a handler; a :class:`PageMessage` (shown as it is) when it cannot be had."""
    model, status = load_message(spec, cache, path)
    if model is None:
        raise PageMessage(status)
    return model


def require_face(face_state: dict, rendered: bool = False) -> dict:
    """The tab's face state for a handler; a :class:`PageMessage` when no face is loaded (or, with
    ``rendered``, nothing has been rendered yet)."""
    if not face_state:
        raise PageMessage("Load a face first (**Edit this face**).")
    if rendered and "result" not in face_state:
        raise PageMessage("Nothing rendered yet: press **Render** first.")
    return face_state


class PageMessage(Exception):
    """A message for the status line of a tab, shown as it is."""


def synthetic_face(index: int, size: int, to_labels: np.ndarray | None = None) -> tuple[Path, Path]:
    """Face ``index`` of the synthetic world at ``size`` written as PNGs (image, label map) into a temp folder;
    ``to_labels`` maps its CelebAMask-HQ labels to another label set (e.g. ``CELEBAMASK_TO_HELEN``)."""
    import tempfile

    from datamodules.synthetic import SyntheticFaceWorld

    face = SyntheticFaceWorld(seed=0).face(int(index), image_size=size)
    label = face.label if to_labels is None else to_labels[face.label]
    folder = Path(tempfile.mkdtemp(prefix="editor_face_"))
    Image.fromarray(face.image).save(folder / f"face{index}.png")
    Image.fromarray(label.astype(np.uint8)).save(folder / f"face{index}_label.png")
    return folder / f"face{index}.png", folder / f"face{index}_label.png"


def guarded(outputs: int, what: str):
    """Decorate an event handler whose last output is the status line: on failure the other ``outputs`` stay
    as they are and the status says what went wrong (one line, never a traceback)."""
    import gradio as gr

    def wrap(fn):
        def run(*args):
            try:
                return fn(*args)
            except PageMessage as err:
                message = str(err)
            except Exception as err:  # whatever a loader or a model raises must become a page message
                message = error_message(err, what)
            return (*([gr.skip()] * outputs), message) if outputs else message  # one output: not a tuple

        return run

    return wrap


# ------------------------------------------------------------------------------------------ shared page pieces
def model_header(
    spec: TabSpec,
    tab: str,
    models: ModelCache,
    checkpoint: str | None,
    intro: str,
    accepts: str,
    describe: Callable[[Any], str] | None = None,
):
    """The tab's instructions, its checkpoint box with a Load button (wired: the status says what loaded, plus
    ``describe(model)``) and its status line (ids ``<tab>-ckpt|load|status``); returns (box, status)."""
    import gradio as gr

    gr.Markdown(intro)
    with gr.Row():
        box = gr.Textbox(label=f"{spec.title} checkpoint ({accepts}; empty: newest run)", value=checkpoint or "",
                         elem_id=f"{tab}-ckpt", scale=4)  # fmt: skip
        load = gr.Button("Load checkpoint", elem_id=f"{tab}-load", scale=1)
    status = gr.Markdown(load_message(spec, models, checkpoint)[1], elem_id=f"{tab}-status")

    @guarded(0, "Loading the checkpoint")
    def on_load(path):
        model = require_model(spec, models, path)
        return load_message(spec, models, path)[1] + (f" {describe(model)}" if describe else "")

    load.click(on_load, [box], [status])
    return box, status


def synthetic_example(spec: TabSpec, tab: str, models: ModelCache, ckpt, outputs, to_labels=None) -> None:
    """A face-number box and a "Load a synthetic face" button (ids ``<tab>-example-index``, ``<tab>-example``)
    that fill ``outputs`` (the face and mask inputs, then the status line) with a synthetic face at the model's
    size."""
    import gradio as gr

    with gr.Row():
        index = gr.Number(label="synthetic face #", value=0, precision=0, minimum=0, scale=1,
                          elem_id=f"{tab}-example-index")  # fmt: skip
        button = gr.Button("Load a synthetic face", elem_id=f"{tab}-example", scale=1)

    @guarded(2, "Loading the synthetic face")
    def on_example(path, number):
        model = require_model(spec, models, path)
        image, label = synthetic_face(int(number or 0), model.hparams.image_size, to_labels)
        return str(image), str(label), f"Synthetic face {int(number or 0)}: press **Edit this face**."

    button.click(on_example, [ckpt, index], outputs)


def mask_editor(tab: str, names: tuple[str, ...], colors: list[str], brush: str):
    """Mask canvas (a brush per class, fixed palette), input and result side by side, the class legend, and
    Render / Reset mask / Save buttons; returns (canvas, input, result, render, reset, save)."""
    import gradio as gr

    with gr.Row():
        canvas = gr.ImageEditor(
            label="Mask (brush per class)", type="numpy", image_mode="RGBA", format="png",
            brush=gr.Brush(colors=colors, default_color=colors[names.index(brush)], color_mode="fixed",
                           default_size=12),
            eraser=gr.Eraser(default_size=12), layers=False, transforms=(), sources=(),
            canvas_size=(CANVAS, CANVAS), elem_id=f"{tab}-canvas", height=560,
        )  # fmt: skip
        views = dict(type="numpy", format="png", interactive=False, height=560)
        input_view = gr.Image(label="Input", elem_id=f"{tab}-input", **views)
        result = gr.Image(label="Result", elem_id=f"{tab}-result", **views)
    gr.HTML(legend_html(names, colors))
    with gr.Row():
        render = gr.Button("Render", variant="primary", elem_id=f"{tab}-render")
        reset = gr.Button("Reset mask", elem_id=f"{tab}-reset")
        save = gr.Button("Save result + mask", elem_id=f"{tab}-save")
    return canvas, input_view, result, render, reset, save
