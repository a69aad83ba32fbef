"""Interactive face editor in the browser: ``python -m experiments.editor [--checkpoint [MODEL=]PATH ...]``.

A Gradio page served on localhost, offline (no share link, no analytics, no remote fonts), with one tab per
model. Each tab is one module beside this file (``experiments/editor/<model>.py``) exposing

- ``EDITING``: the module of the model's editing functions (``portrait_models.<paper>.editing``); the tab is
  shown only when that module exists, so a model that has not landed is simply absent;
- ``SPEC``: a :class:`~experiments.editor.common.TabSpec` (title, the experiment of ``make train-<paper>``
  whose newest run is the default checkpoint, and that command);
- ``CSS``: extra page styles (may be empty);
- ``build(checkpoint, device, out_dir)``: the tab's components and events, called inside ``gr.Blocks``.

Registering a model is one entry in ``TABS``.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
from pathlib import Path
from types import ModuleType

TABS: dict[str, str] = {
    "maskgan": "experiments.editor.maskgan",
    "maggan": "experiments.editor.maggan",
    "mask_guided": "experiments.editor.mask_guided",
    "portraitgan": "experiments.editor.portraitgan",
}


def _exists(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:  # a parent package is missing
        return False


def available_tabs() -> dict[str, ModuleType]:
    """The tab modules whose model has landed (its ``editing`` module exists), in ``TABS`` order."""
    tabs = {}
    for name, module_name in TABS.items():
        module = importlib.import_module(module_name)
        if _exists(module.EDITING):
            tabs[name] = module
    return tabs


def offline_environment() -> None:
    """No telemetry, no version check, no hub look-ups: the page must work without a network."""
    os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")


def build_app(checkpoints: dict[str, str], device: str = "cpu", out_dir: Path = Path("runs/editor")):
    """The Gradio page: one tab per available model; ``checkpoints`` maps a tab name to its checkpoint."""
    offline_environment()
    import gradio as gr

    tabs = available_tabs()
    unknown = sorted(set(checkpoints) - set(tabs))
    if unknown:
        raise ValueError(f"--checkpoint for {', '.join(unknown)}: no such tab; tabs: {', '.join(tabs) or 'none'}")
    with gr.Blocks(title="portrait-gans editor", analytics_enabled=False) as app:
        gr.Markdown("## portrait-gans: interactive face editor")
        with gr.Tabs():
            for name, module in tabs.items():
                module.build(checkpoints.get(name), device, Path(out_dir))
    app.editor_css = "\n".join(module.CSS for module in tabs.values())
    return app


def theme():
    """Gradio's default look with system fonts (the stock theme fetches web fonts from a remote host)."""
    import gradio as gr

    return gr.themes.Default(font=["ui-sans-serif", "system-ui", "sans-serif"], font_mono=["ui-monospace", "monospace"])


def launch(app, host: str = "127.0.0.1", port: int | None = None, block: bool = True):
    """Serve ``app`` on localhost (never a share link). Returns the local URL when ``block`` is False."""
    app.launch(
        server_name=host, server_port=port, share=False, prevent_thread_lock=not block, quiet=not block,
        footer_links=[], theme=theme(), css=app.editor_css, show_error=False, inbrowser=False,
    )  # fmt: skip
    return app.local_url
