"""`modules.scripts`: Script, AlwaysVisible and the per-tab ScriptRunner."""

from __future__ import annotations

import importlib.util
import inspect
import sys
from pathlib import Path
from typing import Any

import gradio as gr

AlwaysVisible = object()
scripts_data: list[tuple[type, str, str]] = []


class Script:
    filename: str = ""
    args_from: int = 0
    args_to: int = 0
    alwayson = False
    is_txt2img = False
    is_img2img = False
    sorting_priority = 0

    def title(self) -> str:
        raise NotImplementedError

    def show(self, is_img2img: bool) -> Any:
        return True

    def ui(self, is_img2img: bool) -> list[Any]:
        return []

    def run(self, p: Any, *args: Any) -> Any:
        return None

    def setup(self, p: Any, *args: Any) -> None:
        pass

    def process(self, p: Any, *args: Any) -> None:
        pass

    def before_component(self, component: Any, **kwargs: Any) -> None:
        pass

    def after_component(self, component: Any, **kwargs: Any) -> None:
        pass

    def elem_id(self, item_id: str) -> str:
        tab = "img2img" if self.is_img2img else "txt2img"
        return f"{tab}_{self.title().lower().replace(' ', '_')}_{item_id}"


def basedir() -> str:
    frame = inspect.stack()[1]
    return str(Path(frame.filename).resolve().parent.parent)


class ScriptRunner:
    def __init__(self) -> None:
        self.scripts: list[Script] = []
        self.alwayson_scripts: list[Script] = []
        self.selectable_scripts: list[Script] = []
        self.inputs: list[Any] = [None]

    def initialize_scripts(self, is_img2img: bool) -> None:
        self.scripts, self.alwayson_scripts, self.selectable_scripts = [], [], []
        for cls, path, _ in scripts_data:
            script = cls()
            script.filename = path
            script.is_txt2img, script.is_img2img = not is_img2img, is_img2img
            visibility = script.show(is_img2img)
            if visibility is AlwaysVisible:
                script.alwayson = True
                self.alwayson_scripts.append(script)
            elif visibility:
                self.selectable_scripts.append(script)
            self.scripts.append(script)
        self.alwayson_scripts.sort(key=lambda s: s.sorting_priority)

    def setup_ui(self) -> list[Any]:
        """Creates every script's UI; returns the inputs Generate passes as *args."""
        titles = ["None"] + [s.title() for s in self.selectable_scripts]
        dropdown = gr.Dropdown(
            label="Script", choices=titles, value="None", type="index", elem_id="script_list"
        )
        inputs: list[Any] = [dropdown]
        for script in self.alwayson_scripts + self.selectable_scripts:
            script.args_from = len(inputs)
            controls = script.ui(script.is_img2img) or []
            inputs += list(controls)
            script.args_to = len(inputs)
        self.inputs = inputs
        return inputs

    def setup_scrips(self, p: Any, is_ui: bool = True) -> None:
        for script in self.alwayson_scripts:
            script.setup(p, *p.script_args[script.args_from : script.args_to])

    def run(self, p: Any, *args: Any) -> Any:
        index = args[0] if args else 0
        if not index:
            return None
        script = self.selectable_scripts[index - 1]
        return script.run(p, *args[script.args_from : script.args_to])

    def process(self, p: Any) -> None:
        for script in self.alwayson_scripts:
            script.process(p, *p.script_args[script.args_from : script.args_to])

    def before_component(self, component: Any, **kwargs: Any) -> None:
        for script in self.scripts:
            script.before_component(component, **kwargs)

    def after_component(self, component: Any, **kwargs: Any) -> None:
        for script in self.scripts:
            script.after_component(component, **kwargs)


scripts_txt2img = ScriptRunner()
scripts_img2img = ScriptRunner()
scripts_current: ScriptRunner | None = None


def load_scripts(folders: list[Path]) -> None:
    """Imports every `scripts/*.py` of each folder, its base dir first on sys.path."""
    scripts_data.clear()
    for folder in folders:
        for path in sorted(folder.glob("*.py")):
            base = str(folder.parent)
            saved = list(sys.path)
            sys.path.insert(0, base)
            try:
                name = f"forge_script_{folder.parent.name}_{path.stem}"
                spec = importlib.util.spec_from_file_location(name, path)
                assert spec and spec.loader
                module = importlib.util.module_from_spec(spec)
                sys.modules[name] = module  # so its dataclasses resolve (and tests find it)
                spec.loader.exec_module(module)
            finally:
                sys.path[:] = saved
            for value in vars(module).values():
                if isinstance(value, type) and issubclass(value, Script) and value is not Script:
                    scripts_data.append((value, str(path), base))
