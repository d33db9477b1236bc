"""Command-line options derived from the configuration dataclasses: one option per field, with the field's
default, its help (and allowed values) from `config.option`, and its flag from its name. A command is a plain
function of keyword arguments whose signature `command(...)` builds from the dataclasses it takes; `build`
turns the values Typer parsed back into the validated object. Nothing here lists a field by hand.

Lists, optional numbers and unions come in as text ('' = unset, as MLproject passes it) and are cast by the
field's own annotation (config.cast); a value that does not fit is one line naming the option.
"""

from __future__ import annotations

import dataclasses
import inspect
import typing
from typing import Annotated

import typer

from lrnoise.config import cast, flag
from lrnoise.errors import LrnoiseError

SCALARS = (str, int, float, bool)


def annotated_leaves(cls) -> list[tuple[dataclasses.Field, object]]:
    """(field, annotation) of every field of `cls` that is an option: nested dataclass fields
    (StudySettings.execution) are flattened."""
    found = []
    for f in dataclasses.fields(cls):
        annotation = typing.get_type_hints(cls)[f.name]
        found += annotated_leaves(annotation) if dataclasses.is_dataclass(annotation) else [(f, annotation)]
    return found


def leaves(cls) -> list[dataclasses.Field]:
    """The fields of `cls` that are options, nested dataclasses' flattened."""
    return [f for f, _ in annotated_leaves(cls)]


def as_text(annotation) -> bool:
    """Whether the option is given as text and cast here: anything but a plain scalar or an optional flag."""
    return not (annotation in SCALARS or annotation == (bool | None))


def help_of(f: dataclasses.Field) -> str:
    text = f.metadata.get("help", "")
    choices = f.metadata.get("choices")
    text = f"{text} ({' | '.join(map(str, choices))})" if choices else text
    return escaped(text)


def escaped(text: str) -> str:
    """Help as typed: Typer's rich help would read '[default: ...]' as markup and drop it."""
    return text.replace("[", "\\[")


def parameter(f: dataclasses.Field, annotation) -> inspect.Parameter:
    """One Typer option for one field: its flags, help and default; text for what `build` casts."""
    default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
    if as_text(annotation):
        option_type = str | None
        default = (
            None
            if default is None or default == ()
            else ",".join(map(str, default))
            if isinstance(default, tuple)
            else str(default)
        )
    else:
        option_type = annotation
    flags = f.metadata.get("flags") or ()
    info = typer.Option(*flags, help=help_of(f), show_default=default not in (None, ""))
    return inspect.Parameter(
        f.name, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=Annotated[option_type, info]
    )


def parameters(*classes) -> list[inspect.Parameter]:
    """The options of every leaf field of `classes`, in field order."""
    return [parameter(f, annotation) for cls in classes for f, annotation in annotated_leaves(cls)]


def command(*classes, extra: tuple = ()):
    """Gives a `def fn(**values)` the signature of its dataclasses' options (then `extra`: parameters of the command
    itself, written as `inspect.Parameter`s), so Typer sees one option per field."""

    def decorate(fn):
        fn.__signature__ = inspect.Signature([*parameters(*classes), *extra])
        return fn

    return decorate


def extra_option(name: str, annotation, default, help: str, *flags: str) -> inspect.Parameter:
    """An option of a command that is not a configuration field (--experiment, --resume, ...)."""
    info = typer.Option(*flags, help=escaped(help), show_default=default not in (None, ""))
    return inspect.Parameter(
        name, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=Annotated[annotation, info]
    )


WORDS = {int: "a whole number", float: "a number", bool: "true or false", str: "text"}


def describe(annotation) -> str:
    if annotation is tuple or typing.get_origin(annotation) is tuple:
        return "a comma-separated list"
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    if args:
        return " or ".join(describe(a) for a in args)
    return WORDS.get(annotation, str(annotation))


def value_of(f: dataclasses.Field, annotation, value, parsers: dict):
    """A field's value from what Typer parsed: text cast by the annotation ('' or None = the field's default)."""
    if f.name in parsers:
        return parsers[f.name](value)
    if not as_text(annotation) or not isinstance(value, str):
        return value
    if not value.strip():  # '' = unset (MLproject's way): the field's default
        return None if _optional(annotation) else f.default
    try:
        typed = cast(annotation, value.strip())
    except ValueError:
        raise LrnoiseError(f"{flag(f.name)} must be {describe(annotation)}, got {value!r}") from None
    if typed == ():  # only separators
        raise LrnoiseError(f"{flag(f.name)} is empty")
    return typed


def _optional(annotation) -> bool:
    return type(None) in typing.get_args(annotation)


def build(cls, values: dict, parsers: dict | None = None):
    """An instance of `cls` from a command's option values (nested dataclasses built from their own fields);
    values of fields `cls` does not have are ignored. Not validated: call its `validate()`."""
    found = {}
    for f in dataclasses.fields(cls):
        annotation = typing.get_type_hints(cls)[f.name]
        if dataclasses.is_dataclass(annotation):
            found[f.name] = build(annotation, values, parsers)
        elif f.name in values:
            found[f.name] = value_of(f, annotation, values[f.name], parsers or {})
    return cls(**found)
