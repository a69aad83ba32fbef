"""Gu et al. (mask-guided portrait editing) tab: paint the Helen mask, render, and component transfer.

The model works with Helen's 11 classes; the canvas shows them in the project palette (each Helen class in the
colour of its CelebAMask-HQ class, ``labels.HELEN_TO_CELEBAMASK``) with one brush per Helen class. Component
transfer takes the chosen components (eyes, mouth, skin, hair, …) from a donor face and its mask. Rendering is
``portrait_models.mask_guided.editing`` (the same as ``python -m experiments.edit mask_guided``).
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from datamodules.labels import CELEBAMASK_TO_HELEN, HELEN_CLASSES, HELEN_TO_CELEBAMASK, label_to_color
from experiments.editor.common import (
    LEGEND_CSS,
    ModelCache,
    PageMessage,
    TabSpec,
    canvas_to_label,
    canvas_value,
    enlarge,
    guarded,
    mask_editor,
    model_header,
    palette_hex,
    require_face,
    require_model,
    save_edit,
    synthetic_example,
    tensor_to_uint8,
)

EDITING = "portrait_models.mask_guided.editing"
SPEC = TabSpec(title="Mask-guided (Gu et al.)", experiment="mask_guided_synthetic_64",
               train_command="make train-mask-guided")  # fmt: skip
CSS = LEGEND_CSS
HELEN_COLORS = [palette_hex()[int(c)] for c in HELEN_TO_CELEBAMASK]


def load_model(path: Path, device: str):
    from portrait_models.mask_guided.editing import load_system

    return load_system(path, device)


def helen_canvas(label: np.ndarray) -> dict:
    return canvas_value(HELEN_TO_CELEBAMASK[label])


def canvas_helen(value: dict, size: int) -> np.ndarray:
    return CELEBAMASK_TO_HELEN[canvas_to_label(value, size)]


def build(checkpoint: str | None, device: str, out_dir: Path) -> None:
    import gradio as gr

    from portrait_models.mask_guided import editing
    from portrait_models.mask_guided.components import COMPONENTS

    models = ModelCache(load_model, device)

    with gr.Tab(SPEC.title, id="mask_guided"):
        ckpt, status = model_header(
            SPEC, "mask_guided", models, checkpoint,
            "Paint the face's Helen mask (a brush per class), **Render** the face under the edited mask, or take "
            "components from a donor face (**Transfer components**). **Save** writes the result and the mask.",
            "a .ckpt, the official folder or a converted .pth",
            lambda model: f"Components: {', '.join(model.generator.component_names)}.",
        )  # fmt: skip
        with gr.Row():
            face = gr.Image(label="Face", type="filepath", format="png", sources=["upload"],
                            elem_id="mask_guided-face", height=240)  # fmt: skip
            with gr.Column():
                mask_file = gr.File(label="Its Helen mask: label PNG (0..10) or colour PNG",
                                    elem_id="mask_guided-mask")  # fmt: skip
                synthetic_example(SPEC, "mask_guided", models, ckpt, [face, mask_file, status], CELEBAMASK_TO_HELEN)
                use_btn = gr.Button("Edit this face", variant="primary", elem_id="mask_guided-use")
        canvas, input_view, result, render_btn, reset_btn, save_btn = mask_editor(
            "mask_guided", HELEN_CLASSES, HELEN_COLORS, "hair"
        )
        with gr.Accordion("Component transfer (pick the donor's components)", open=False):
            with gr.Row():
                donor_face = gr.Image(label="Donor face", type="filepath", format="png", sources=["upload"],
                                      elem_id="mask_guided-donor-face", height=200)  # fmt: skip
                donor_mask = gr.File(label="Donor's Helen mask", elem_id="mask_guided-donor-mask")
                parts = gr.CheckboxGroup(list(COMPONENTS), value=["mouth"],
                                         label="Components", elem_id="mask_guided-parts")  # fmt: skip
                transfer_btn = gr.Button("Transfer components", elem_id="mask_guided-transfer")
        saved = gr.File(label="Saved files", file_count="multiple", interactive=False, elem_id="mask_guided-saved")
        state = gr.State({})

    @guarded(4, "Reading the face")
    def on_use(path, face_path, mask_path):
        model = require_model(SPEC, models, path)
        size = model.hparams.image_size
        if face_path is None or mask_path is None:
            raise PageMessage("Give a face and its Helen mask.")
        image, label = editing.read_image(face_path, size), editing.read_label(mask_path, size)
        face_state = {"image": image, "label": label}
        return (
            face_state,
            helen_canvas(label[0].numpy()),
            enlarge(tensor_to_uint8(image)),
            None,
            (f"Editing a {size}² face, mask {Path(mask_path).name}."),
        )

    def finish(face_state, out, edited, seconds, what):
        rendered = tensor_to_uint8(out)
        return {**face_state, "result": rendered, "edited": edited}, enlarge(rendered), (f"{what} in {seconds:.2f} s.")

    @guarded(2, "Rendering")
    def on_render(path, face_state, value):
        model = require_model(SPEC, models, path)
        require_face(face_state)
        edited = canvas_helen(value, model.hparams.image_size)
        start = time.perf_counter()
        out = editing.mask_edit(model, face_state["image"], face_state["label"], torch.from_numpy(edited)[None])
        changed = int((edited != face_state["label"][0].numpy()).sum())
        return finish(face_state, out, edited, time.perf_counter() - start, f"Rendered ({changed} mask pixels edited)")

    @guarded(2, "Component transfer")
    def on_transfer(path, face_state, donor_path, donor_mask_path, chosen):
        model = require_model(SPEC, models, path)
        size = model.hparams.image_size
        require_face(face_state)
        if donor_path is None or donor_mask_path is None:
            raise PageMessage("Give the donor face and its Helen mask.")
        donor_image, donor_label = editing.read_image(donor_path, size), editing.read_label(donor_mask_path, size)
        start = time.perf_counter()
        out = editing.component_transfer(model, face_state["image"], face_state["label"], donor_image, donor_label,
                                         chosen or ())  # fmt: skip
        edited = face_state["label"][0].numpy()
        return finish(face_state, out, edited, time.perf_counter() - start, f"Took {', '.join(chosen or [])}")

    @guarded(1, "Resetting the mask")
    def on_reset(face_state):
        return helen_canvas(require_face(face_state)["label"][0].numpy()), "Mask reset."

    @guarded(1, "Saving")
    def on_save(face_state):
        require_face(face_state, rendered=True)
        stem = time.strftime("mask_guided_%Y%m%d-%H%M%S")
        # the mask files hold Helen labels (0..10) and their colours in the project palette
        paths = save_edit(out_dir, stem, face_state["result"], face_state["edited"])
        Image.fromarray(label_to_color(HELEN_TO_CELEBAMASK[face_state["edited"]])).save(paths[2])
        return [str(p) for p in paths], f"Saved {', '.join(f'`{p}`' for p in paths)} (Helen labels)."

    use_btn.click(on_use, [ckpt, face, mask_file], [state, canvas, input_view, result, status])
    render_btn.click(on_render, [ckpt, state, canvas], [state, result, status])
    transfer_btn.click(on_transfer, [ckpt, state, donor_face, donor_mask, parts], [state, result, status])
    reset_btn.click(on_reset, [state], [canvas, status])
    save_btn.click(on_save, [state], [saved, status])
