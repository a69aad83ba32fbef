"""PortraitGAN tab: the 68 landmarks drawn over the face, each point draggable; named edits, the modality
chooser, and the interpolation between two expressions as a slider.

The landmarks come from a file (.pts / .json / .npy), from dlib (the ``faces`` extra) for a plain photo, or from
the synthetic face world. A dropped point re-renders at once. Rendering is ``portrait_models.portraitgan.editing``
(the same as ``python -m experiments.edit portraitgan``).
"""

from __future__ import annotations

import base64
import io
import json
import time
from pathlib import Path

import numpy as np
from PIL import Image

from experiments.editor.common import (
    ModelCache,
    PageMessage,
    TabSpec,
    enlarge,
    guarded,
    model_header,
    require_face,
    require_model,
)

EDITING = "portrait_models.portraitgan.editing"
SPEC = TabSpec(title="PortraitGAN", experiment="portraitgan_synthetic_64", train_command="make train-portraitgan")
STAGE = 448  # display size of the landmark view
CSS = """
.pg-stage {position:relative; width:448px; height:448px; touch-action:none; user-select:none}
.pg-stage img {position:absolute; left:0; top:0; width:448px; height:448px; image-rendering:pixelated}
.pg-stage svg {position:absolute; left:0; top:0}
.pg-stage circle {fill:#ffdd00; stroke:#000; stroke-width:1; cursor:grab}
.pg-stage circle.lip {fill:#ff3366}
"""

# Points are dragged in the page; on release their model-frame coordinates go into the JSON textbox and Render is
# clicked. Listeners sit on the component's root, so they survive re-renders of the template.
DRAG_JS = """
let drag = null;
const stage = () => element.querySelector('.pg-stage');
element.addEventListener('pointerdown', (e) => {
  if (e.target.tagName !== 'circle') return;
  drag = e.target; drag.setPointerCapture(e.pointerId); e.preventDefault();
});
element.addEventListener('pointermove', (e) => {
  if (!drag) return;
  const box = stage().getBoundingClientRect();
  drag.setAttribute('cx', e.clientX - box.left); drag.setAttribute('cy', e.clientY - box.top);
});
element.addEventListener('pointerup', () => {
  if (!drag) return;
  drag = null;
  const s = stage(); const scale = Number(s.dataset.size) / Number(s.dataset.stage);
  const pts = [...s.querySelectorAll('circle')].map(c =>
    [+((Number(c.getAttribute('cx')) + 0.5) * scale - 0.5).toFixed(3),
     +((Number(c.getAttribute('cy')) + 0.5) * scale - 0.5).toFixed(3)]);
  const box = document.querySelector('#portraitgan-points textarea, #portraitgan-points input');
  box.value = JSON.stringify(pts);
  box.dispatchEvent(new Event('input', {bubbles: true}));
  document.querySelector('#portraitgan-render').click();
});
"""

LIPS = set(range(48, 68))


def load_model(path: Path, device: str):
    from portrait_models.portraitgan.editing import load_portraitgan

    return load_portraitgan(path, device)


def stage_html(image: np.ndarray | None, points: np.ndarray | None, size: int) -> str:
    """The face with its landmarks as draggable circles (model-frame points shown at STAGE px)."""
    if image is None or points is None:
        return '<div class="pg-stage-empty">Load a face and its landmarks, then drag the points.</div>'
    buffer = io.BytesIO()
    Image.fromarray(enlarge(image, STAGE)).save(buffer, format="PNG")
    src = "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()
    shown = (np.asarray(points) + 0.5) * STAGE / size - 0.5
    circles = "".join(
        f'<circle data-i="{i}" class="{"lip" if i in LIPS else ""}" cx="{x:.2f}" cy="{y:.2f}" r="5"></circle>'
        for i, (x, y) in enumerate(shown)
    )
    return (
        f'<div class="pg-stage" data-size="{size}" data-stage="{STAGE}"><img src="{src}" alt="face">'
        f'<svg width="{STAGE}" height="{STAGE}">{circles}</svg></div>'
    )


def parse_points(text: str) -> np.ndarray:
    try:
        points = np.asarray(json.loads(text), dtype=np.float64)
    except (ValueError, TypeError):
        raise ValueError("the landmarks box must hold JSON: 68 [x, y] pairs in the model's frame") from None
    if points.shape != (68, 2):
        raise ValueError(f"the landmarks box holds shape {points.shape}; expected 68 [x, y] pairs")
    return points


def points_text(points: np.ndarray) -> str:
    return json.dumps(np.round(np.asarray(points, np.float64), 3).tolist())


def build(checkpoint: str | None, device: str, out_dir: Path) -> None:
    import gradio as gr

    from datamodules.labels import EMOTION_INDEX, RAFD_EMOTIONS
    from portrait_models.portraitgan import editing
    from portrait_models.portraitgan.landmark_map import NAMED_EDITS, apply_named_edit, interpolate_landmarks

    models = ModelCache(load_model, device)

    with gr.Tab(SPEC.title, id="portraitgan"):
        ckpt, status = model_header(
            SPEC, "portraitgan", models, checkpoint,
            "Drag the landmarks (lips in pink): the face re-renders when a point is dropped. Named edits move "
            "groups of points; the modality picks photo / sketch / cartoon / painting; remember two expressions "
            "as A and B and slide between them.",
            "a .ckpt",
        )  # fmt: skip
        with gr.Row():
            face = gr.Image(label="Face", type="filepath", format="png", sources=["upload"],
                            elem_id="portraitgan-face", height=240)  # fmt: skip
            with gr.Column():
                landmarks_file = gr.File(label="Its 68 landmarks (.pts / .json / .npy; none: dlib detects them)",
                                         elem_id="portraitgan-landmarks")  # fmt: skip
                with gr.Row():
                    person = gr.Number(label="synthetic person #", value=0, precision=0, minimum=0)
                    emotion = gr.Dropdown(list(RAFD_EMOTIONS), value="neutral", label="expression")
                    example_btn = gr.Button("Load a synthetic face", elem_id="portraitgan-example")
                use_btn = gr.Button("Edit this face", variant="primary", elem_id="portraitgan-use")
        with gr.Row():
            stage = gr.HTML(stage_html(None, None, 1), js_on_load=DRAG_JS, elem_id="portraitgan-stage",
                            min_height=STAGE)  # fmt: skip
            result = gr.Image(label="Result", type="numpy", format="png", interactive=False,
                              elem_id="portraitgan-result", height=STAGE)  # fmt: skip
        with gr.Row():
            modality = gr.Dropdown(list(editing.DEFAULT_MODALITY_NAMES), value="photo", label="Modality",
                                   elem_id="portraitgan-modality")  # fmt: skip
            edit_name = gr.Dropdown(list(NAMED_EDITS), value="mouth_open", label="Named edit")
            amount = gr.Number(label="amount (0: default, S/16 px for mouth_open, 0.1 for face_slim)", value=0)
            edit_btn = gr.Button("Apply edit", elem_id="portraitgan-edit")
        with gr.Row():
            set_a = gr.Button("Remember as expression A", elem_id="portraitgan-set-a")
            set_b = gr.Button("Remember as expression B", elem_id="portraitgan-set-b")
            t_slider = gr.Slider(0, 1, value=0, step=0.05, label="A → B", elem_id="portraitgan-t")
        with gr.Row():
            render_btn = gr.Button("Render", variant="primary", elem_id="portraitgan-render")
            reset_btn = gr.Button("Reset landmarks", elem_id="portraitgan-reset")
            save_btn = gr.Button("Save result + landmarks", elem_id="portraitgan-save")
        points_box = gr.Textbox(label="Landmarks (JSON, model frame; dragging updates it)", lines=2, max_lines=3,
                                elem_id="portraitgan-points")  # fmt: skip
        saved = gr.File(label="Saved files", file_count="multiple", interactive=False, elem_id="portraitgan-saved")
        state = gr.State({})

    def render_points(model, face_state, points, modality_name):
        size = model.hparams.image_size
        index = editing.modality_index(modality_name, editing.DEFAULT_MODALITY_NAMES, model.hparams.num_modalities)
        start = time.perf_counter()
        out = editing.translate(model, editing.to_tensor(face_state["image"], size), points, index)
        return editing.to_uint8(out), time.perf_counter() - start

    @guarded(2, "Loading the synthetic face")
    def on_example(path, index, expression):
        from datamodules.emotion import write_pts
        from datamodules.synthetic import SyntheticFaceWorld

        model = require_model(SPEC, models, path)
        face_ = SyntheticFaceWorld(0).render(int(index or 0), EMOTION_INDEX[expression], 0, model.hparams.image_size)
        folder = out_dir / "inputs"
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(face_.image).save(folder / f"person{int(index or 0)}_{expression}.png")
        write_pts(folder / f"person{int(index or 0)}_{expression}.pts", face_.landmarks)
        stem = folder / f"person{int(index or 0)}_{expression}"
        return str(stem.with_suffix(".png")), str(stem.with_suffix(".pts")), "Synthetic face: press **Edit this face**."

    @guarded(4, "Reading the face")
    def on_use(path, face_path, landmarks_path):
        model = require_model(SPEC, models, path)
        size = model.hparams.image_size
        if face_path is None:
            raise PageMessage("Load a face image first (upload one, or **Load a synthetic face**).")
        image = editing.read_image(face_path)
        raw = editing.read_landmarks(landmarks_path) if landmarks_path else editing.detect_landmarks(image)
        points = editing.to_frame(raw, image.shape, size)
        small = np.asarray(Image.fromarray(image).resize((size, size), Image.BICUBIC))
        face_state = {"image": small, "points": points, "a": points, "b": points}
        return face_state, stage_html(small, points, size), points_text(points), None, f"Editing a {size}² face."

    @guarded(3, "Rendering")
    def on_render(path, face_state, text, modality_name):
        model = require_model(SPEC, models, path)
        require_face(face_state)
        points = parse_points(text)
        out, seconds = render_points(model, face_state, points, modality_name)
        moved = float(np.abs(points - face_state["points"]).max())
        new_state = {**face_state, "result": out, "edited": points}
        message = f"Rendered in {seconds:.2f} s ({modality_name}; landmarks moved up to {moved:.1f} px)."
        return new_state, enlarge(out, STAGE), message

    @guarded(2, "The named edit")
    def on_edit(path, face_state, text, name, value):
        model = require_model(SPEC, models, path)
        require_face(face_state)
        size = model.hparams.image_size
        points = apply_named_edit(parse_points(text), name, float(value) if value else None, size)
        return stage_html(face_state["image"], points, size), points_text(points), f"Applied {name}: rendering."

    def remember(which):
        @guarded(1, "Remembering the expression")
        def run(face_state, text):
            require_face(face_state)
            return {**face_state, which: parse_points(text)}, f"Expression {which.upper()} remembered."

        return run

    @guarded(4, "Interpolating")
    def on_slide(path, face_state, t, modality_name):
        model = require_model(SPEC, models, path)
        require_face(face_state)
        points = interpolate_landmarks(face_state["a"], face_state["b"], float(t))
        out, seconds = render_points(model, face_state, points, modality_name)
        size = model.hparams.image_size
        new_state = {**face_state, "result": out, "edited": points}
        return (new_state, stage_html(face_state["image"], points, size), points_text(points), enlarge(out, STAGE),
                f"t = {float(t):.2f} between A and B, rendered in {seconds:.2f} s.")  # fmt: skip

    @guarded(2, "Resetting the landmarks")
    def on_reset(path, face_state):
        model = require_model(SPEC, models, path)
        require_face(face_state)
        points = face_state["points"]
        return stage_html(face_state["image"], points, model.hparams.image_size), points_text(points), "Reset."

    @guarded(1, "Saving")
    def on_save(face_state):
        require_face(face_state, rendered=True)
        from datamodules.emotion import write_pts

        stem = time.strftime("portraitgan_%Y%m%d-%H%M%S")
        out_dir.mkdir(parents=True, exist_ok=True)
        image_path, pts_path = out_dir / f"{stem}_result.png", out_dir / f"{stem}_landmarks.pts"
        Image.fromarray(face_state["result"]).save(image_path)
        write_pts(pts_path, face_state["edited"])
        return [str(image_path), str(pts_path)], f"Saved `{image_path}`, `{pts_path}`."

    render_inputs = [ckpt, state, points_box, modality]
    example_btn.click(on_example, [ckpt, person, emotion], [face, landmarks_file, status])
    use_btn.click(on_use, [ckpt, face, landmarks_file], [state, stage, points_box, result, status])
    render_btn.click(on_render, render_inputs, [state, result, status])
    modality.change(on_render, render_inputs, [state, result, status])
    edit_btn.click(on_edit, [ckpt, state, points_box, edit_name, amount], [stage, points_box, status]).then(
        on_render, render_inputs, [state, result, status]
    )
    set_a.click(remember("a"), [state, points_box], [state, status])
    set_b.click(remember("b"), [state, points_box], [state, status])
    t_slider.release(on_slide, [ckpt, state, t_slider, modality], [state, stage, points_box, result, status])
    reset_btn.click(on_reset, [ckpt, state], [stage, points_box, status])
    save_btn.click(on_save, [state], [saved, status])
