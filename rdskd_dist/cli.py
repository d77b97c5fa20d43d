"""One typed config for the CLI and YAML files: argparse options generated from a pydantic model.

Options come from the model's fields (help text from their descriptions), a `--config FILE`
YAML holds the same keys, and command-line options override the file. pydantic validates
the merged result, so the CLI, YAML specs and Python callers share one set of rules (YAML loading
and the one-line error messages live in `config_sources.py`, shared with the sweep spec).
"""

from __future__ import annotations

import argparse
import types
import typing
from pathlib import Path
from typing import Any, Literal, TypeVar

from pydantic import BaseModel

from rdskd_dist.config_sources import YamlFile, validate_with_sources

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
