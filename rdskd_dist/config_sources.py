"""Where config values come from (a YAML file, the command line) and one-line validation errors
that point at them: the train and teacher CLIs and the sweep spec share these.

A YAML file keeps the line of every key, so that pydantic's complaint about `base.batch_size`
reads `spec.yaml:5: base.batch_size: ...`; a value given on the command line gets no file:line.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Collection, Optional, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from rdskd_dist.errors import UserError

M = TypeVar("M", bound=BaseModel)


def _key_lines(node: yaml.Node, prefix: tuple = ()) -> dict[tuple, int]:
    """Map each key path of a YAML document to its 1-based line, for error messages."""
    lines: dict[tuple, int] = {}
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            path = prefix + (key.value,)
            lines[path] = key.start_mark.line + 1
            lines.update(_key_lines(value, path))
    elif isinstance(node, yaml.SequenceNode):
        for i, value in enumerate(node.value):
            lines[prefix + (i,)] = value.start_mark.line + 1
            lines.update(_key_lines(value, prefix + (i,)))
    return lines


class YamlFile:
    """A YAML mapping plus the line of every key, so that validation errors can point at them."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        try:
            text = self.path.read_text()
        except OSError as exc:
            raise UserError(f"cannot read config file {self.path}: {exc.strerror or exc}") from None
        try:
            node = yaml.compose(text, Loader=yaml.SafeLoader)
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f"{self.path}:{mark.line + 1}" if mark else str(self.path)
            raise UserError(f"{where}: invalid YAML: {getattr(exc, 'problem', exc)}") from None
        if data is None:
            data, node = {}, None
        if not isinstance(data, dict):
            raise UserError(f"{self.path}:1: expected a mapping of option names to values")
        self.data: dict[str, Any] = data
        self.lines = _key_lines(node) if node is not None else {}

    def where(self, loc: tuple) -> str | None:
        for n in range(len(loc), 0, -1):
            if tuple(loc[:n]) in self.lines:
                return f"{self.path}:{self.lines[tuple(loc[:n])]}"
        return None


def format_validation_error(exc: ValidationError, source: Optional[YamlFile] = None,
                            cli_paths: Collection[tuple] = (), what: str = "config", root: str = "config") -> str:
    """All of pydantic's complaints on one line: `invalid WHAT: file:line: option: message; ...`.

    An option whose key path starts with one of `cli_paths` came from the command line and gets no
    file:line; a complaint about the document as a whole (a model validator's) is named `root`.
    """
    parts = []
    for err in exc.errors():
        loc = tuple(err["loc"])
        name = ".".join(str(p) for p in loc) or root
        prefix = ""
        if source is not None and not any(loc[:len(p)] == p for p in cli_paths):
            prefix = (source.where(loc) or str(source.path)) + ": "
        msg = err["msg"]
        if err["type"] == "extra_forbidden":
            msg = "unknown option"
        elif err["type"] == "value_error":  # our own validators already name the value
            msg = msg.removeprefix("Value error, ")
        elif "input" in err and not isinstance(err["input"], (dict, list)):
            msg = f"{msg} (got {err['input']!r})"
        parts.append(f"{prefix}{name}: {msg}")
    return f"invalid {what}: " + "; ".join(parts)


def validate_with_sources(model: type[M], file_values: Optional[YamlFile], cli_values: dict[str, Any]) -> M:
    """`model` from a YAML file's values with the command line's on top; a failure is one UserError line."""
    merged = {**(file_values.data if file_values else {}), **cli_values}
    try:
        return model.model_validate(merged)
    except ValidationError as exc:
        raise UserError(format_validation_error(exc, file_values, {(key,) for key in cli_values})) from None


__all__ = ["YamlFile", "format_validation_error", "validate_with_sources"]
