"""`modules.options`: OptionInfo and the Options store behind `shared.opts`."""

from __future__ import annotations

from typing import Any


class OptionInfo:
    def __init__(
        self,
        default: Any = None,
        label: str = "",
        component: Any = None,
        component_args: Any = None,
        onchange: Any = None,
        section: Any = None,
        refresh: Any = None,
        comment_before: str = "",
        comment_after: str = "",
        infotext: Any = None,
        restrict_api: bool = False,
        category_id: Any = None,
    ) -> None:
        self.default = default
        self.label = label
        self.component = component
        self.component_args = component_args
        self.onchange = onchange
        self.section = section
        self.refresh = refresh
        self.category_id = category_id

    def info(self, info: str) -> OptionInfo:
        self.label += f" ({info})"
        return self

    def needs_reload_ui(self) -> OptionInfo:
        return self


class Options:
    def __init__(self, labels: dict[str, OptionInfo]) -> None:
        super().__setattr__("data_labels", dict(labels))
        super().__setattr__("data", {k: v.default for k, v in labels.items()})

    def add_option(self, key: str, info: OptionInfo) -> None:
        self.data_labels[key] = info
        if key not in self.data:
            self.data[key] = info.default

    def set(self, key: str, value: Any) -> bool:
        if key not in self.data_labels:
            return False
        self.data[key] = value
        return True

    def __setattr__(self, key: str, value: Any) -> None:
        if key in self.data_labels:
            self.data[key] = value
        else:
            super().__setattr__(key, value)

    def __getattr__(self, item: str) -> Any:
        data = self.__dict__.get("data", {})
        if item in data:
            return data[item]
        labels = self.__dict__.get("data_labels", {})
        if item in labels:
            return labels[item].default
        raise AttributeError(item)
