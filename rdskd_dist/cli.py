"""One typed config for the CLI and YAML files: argparse options generated from a pydantic model.

Options come from the model's fields (help text from their descriptions), a `--config FILE`
YAML holds the same keys, and command-line options override the file. pydantic validates
the merged result, so the CLI, YAML specs and Python callers share one set of rules.
"""

from __future__ import annotations

import argparse
import types
import typing
from pathlib import Path
from typing import Any, Literal, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from rdskd_dist.errors import UserError

M = TypeVar("M", bound=BaseModel)


def _strip_optional(tp: Any) -> Any:
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) == 1:
            return args[0]
    return tp


def add_model_options(parser: argparse.ArgumentParser, model: type[BaseModel], skip: set[str] = frozenset()) -> None:
    """Add one `--kebab-name` option per (scalar or list) field of `model`."""
    for name, field in model.model_fields.items():
        tp = _strip_optional(field.annotation)
        if name in skip or (isinstance(tp, type) and issubclass(tp, BaseModel)):
            continue  # nested models live in YAML files only
        flag = "--" + name.replace("_", "-")
        help_text = field.description or ""
        if field.default is not None and not callable(field.default_factory):
            help_text += f" (default: {field.default})"
        kwargs: dict[str, Any] = {"dest": name, "default": argparse.SUPPRESS, "help": help_text}
        origin = typing.get_origin(tp)
        if tp is bool:
            kwargs["action"] = argparse.BooleanOptionalAction
        elif origin is Literal:
            kwargs["choices"] = list(typing.get_args(tp))
        elif origin in (list, tuple):
            kwargs["nargs"] = "*"
            kwargs["type"] = typing.get_args(tp)[0]
        elif tp in (int, float, str):
            kwargs["type"] = tp
        elif tp is Path:
            kwargs["type"] = str
        else:
            kwargs["type"] = str
        parser.add_argument(flag, **kwargs)


def add_method_options(parser: argparse.ArgumentParser) -> None:
    """Every registered method's own options, as flat flags (a config checks them against its method)."""
    from rdskd_dist.methods import get_method_class, list_methods

    seen: set[str] = set()
    for method in list_methods():
        options = get_method_class(method).Options
        fresh = {name for name in options.model_fields if name not in seen}
        add_model_options(parser, options, skip=set(options.model_fields) - fresh)
        seen |= fresh


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


def format_validation_error(exc: ValidationError, source: YamlFile | None = None, cli_keys: set[str] = frozenset()) -> str:
    """All of pydantic's complaints on one line, each with its option and, for YAML, file:line."""
    parts = []
    for err in exc.errors():
        loc = tuple(err["loc"])
        name = ".".join(str(p) for p in loc) or "config"
        prefix = ""
        if source is not None and (not loc or loc[0] not in cli_keys):
            prefix = (source.where(loc) or str(source.path)) + ": "
        msg = err["msg"]
        if err["type"] == "extra_forbidden":
            msg = "unknown option"
        elif err["type"] == "value_error":  # our own validators already name the value
            msg = msg.removeprefix("Value error, ")
        elif "input" in err and not isinstance(err["input"], (dict, list)):
            msg = f"{msg} (got {err['input']!r})"
        parts.append(f"{prefix}{name}: {msg}")
    return "invalid config: " + "; ".join(parts)


def validate_with_sources(model: type[M], file_values: YamlFile | None, cli_values: dict[str, Any]) -> M:
    merged = {**(file_values.data if file_values else {}), **cli_values}
    try:
        return model.model_validate(merged)
    except ValidationError as exc:
        raise UserError(format_validation_error(exc, file_values, set(cli_values))) from None


class OneLineParser(argparse.ArgumentParser):
    """argparse, but a usage error is one line on stderr (exit 2) rather than the usage block."""

    def error(self, message: str) -> typing.NoReturn:
        self.exit(2, f"error: {message} (see {self.prog} --help)\n")


def parse_config(model: type[M], argv: list[str] | None, prog: str, description: str) -> M:
    """Parse `--config FILE` plus per-field options into a validated `model` instance."""
    return parse_config_with_sources(model, argv, prog, description)[0]


def parse_config_with_sources(model: type[M], argv: list[str] | None, prog: str,
                              description: str) -> tuple[M, dict[str, str]]:
    """As `parse_config`, plus where each given option came from ("command line" or "FILE:LINE")."""
    parser = OneLineParser(prog=prog, description=description)
    parser.add_argument("--config", metavar="FILE", help="YAML file with the same options (command line wins)")
    add_model_options(parser, model)
    if "method_options" in model.model_fields:
        add_method_options(parser)
    ns = vars(parser.parse_args(argv))
    config_file = ns.pop("config", None)
    source = YamlFile(config_file) if config_file else None
    given = {key: (source.where((key,)) or str(source.path)) for key in (source.data if source else {})}
    given.update({key: "command line" for key in ns})
    return validate_with_sources(model, source, ns), given
