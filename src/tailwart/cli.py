"""Glue between Invoke tasks and the library: errors → exit codes, settings loading,
and ``operator_task``, the decorator of every task (flags declared once, bad numbers
refused as bad input).

Kept light: importing this module must not import fabric, requests or psycopg,
so ``inv --list`` and ``--help`` stay instant.
"""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ParamSpec, TextIO, TypeVar, overload

from invoke.exceptions import Exit
from invoke.parser.argument import Argument
from invoke.tasks import Task

from .env_file import load_settings as load_settings
from .errors import TailwartError

if TYPE_CHECKING:
    from .masking import LineStream
    from .settings import Settings

P = ParamSpec("P")
R = TypeVar("R")
#: what a task body is: called with the invoke Context and the flags
TaskBody = Callable[..., None]

#: help text shared by every task's --env-file flag
ENV_FILE_HELP = "path of the .env file (default: .env)"
STRICT_HELP = "treat warnings about the .env file (permissions) as errors"


#: set to 1 to see the traceback of an unexpected failure
DEBUG_ENV = "TAILWART_DEBUG"
#: a raw .env is read for masking only up to this size
_MASK_READ_LIMIT = 1 << 20


#: what a number flag expects, in words
NUMBER_KINDS = {int: "a whole number", float: "a number"}


class OperatorTask(Task[TaskBody]):
    """Invoke's Task, with number flags that refuse a bad value as bad input.

    Invoke converts int/float flags while it parses the command line, before any task
    (and so before ``exits``) runs, and lets the ValueError escape as a traceback. Its
    documented extension points (``@task(klass=...)``, ``Task.get_arguments``) let these
    flags convert through ``NumberArgument`` instead: ``--port-offset abc`` exits 2
    naming the flag.
    """

    def get_arguments(self, ignore_unknown_help: bool | None = None) -> list[Argument]:
        return [
            NumberArgument.like(arg) if arg.kind in NUMBER_KINDS else arg
            for arg in super().get_arguments(ignore_unknown_help)
        ]


class NumberArgument(Argument):
    """An int or float flag: a value that does not convert exits 2 naming the flag."""

    @classmethod
    def like(cls, arg: Argument) -> NumberArgument:
        """``arg`` as a NumberArgument: every attribute (names, kind, default, help...) kept."""
        number = cls.__new__(cls)
        number.__dict__.update(vars(arg))
        return number

    def set_value(self, value: Any, cast: bool = True) -> None:
        try:
            super().set_value(value, cast)
        except (ValueError, TypeError, OverflowError):
            flag = "--" + str(self.name).replace("_", "-")
            raise Exit(f"{flag} {value!r}: expected {NUMBER_KINDS[self.kind]}", code=2) from None


@dataclass(frozen=True)
class EnvFlags:
    """``--env-file`` and ``--strict``, declared once for every task that reads .env."""

    env_file: str = field(default=".env", metadata={"help": ENV_FILE_HELP})
    strict: bool = field(default=False, metadata={"help": STRICT_HELP})

    def load(self, example: bool = False) -> Settings:
        """The settings of this .env (``example``: the built-in example values instead)."""
        return load_settings(self.env_file, self.strict, example)


#: the default of a task's ``env`` parameter: its flags --env-file and --strict
ENV = EnvFlags()


@overload
def operator_task(body: TaskBody, /) -> Task[TaskBody]: ...
@overload
def operator_task(**options: Any) -> Callable[[TaskBody], Task[TaskBody]]: ...


def operator_task(
    body: TaskBody | None = None, /, **options: Any
) -> Task[TaskBody] | Callable[[TaskBody], Task[TaskBody]]:
    """``@task`` for tailwart: ``exits`` (one error path), number flags that refuse bad
    input (``OperatorTask``), and flag groups.

    A parameter whose default is a frozen dataclass instance (``env: EnvFlags = ENV``)
    is a flag group: each field becomes a flag, its help from the field's metadata, and
    the body receives the group built from those flags. Used bare or with invoke's
    ``@task`` options (``help``, ``iterable``, ``auto_shortflags``, ...).
    """

    def decorate(fn: TaskBody) -> Task[TaskBody]:
        expanded, group_help = _expand_flag_groups(fn)
        helps = {**group_help, **options.pop("help", {})}
        return OperatorTask(exits(expanded), help=helps, **options)

    return decorate if body is None else decorate(body)


def _expand_flag_groups(
    body: TaskBody,
) -> tuple[TaskBody, dict[str, str]]:
    """``body`` with each flag group parameter spread into one parameter per field, in
    place (so short flags are chosen in the same order); and the fields' help."""
    import inspect
    from dataclasses import fields, is_dataclass, replace

    signature = inspect.signature(body)
    params: list[inspect.Parameter] = []
    groups: dict[str, tuple[Any, list[str]]] = {}
    helps: dict[str, str] = {}
    for param in signature.parameters.values():
        group = param.default
        if not is_dataclass(group) or isinstance(group, type):
            params.append(param)
            continue
        names = [f.name for f in fields(group)]
        groups[param.name] = (group, names)
        for f in fields(group):
            default = getattr(group, f.name)
            params.append(inspect.Parameter(f.name, param.kind, default=default, annotation=f.type))
            helps[f.name] = f.metadata["help"]
    if not groups:
        return body, {}

    @functools.wraps(body)
    def grouped(*args: Any, **kwargs: Any) -> None:
        for name, (group, names) in groups.items():
            kwargs[name] = replace(group, **{n: kwargs.pop(n) for n in names if n in kwargs})
        body(*args, **kwargs)

    grouped.__signature__ = signature.replace(parameters=params)  # type: ignore[attr-defined]
    return grouped, helps


def exits(fn: Callable[P, R]) -> Callable[P, R]:
    """Errors → one masked message on stderr and an exit code; never a traceback.

    An expected TailwartError exits with its own code (2 bad input, 1 failed operation).
    Anything else is a bug or an unforeseen failure: one line (type + masked message),
    a hint how to see the traceback (TAILWART_DEBUG=1), exit 1.
    """

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        from invoke.exceptions import ParseError, UnexpectedExit

        _quiet_background_errors(kwargs.get("env_file"))
        saved = sys.stdout, sys.stderr
        streams = _printable_output(kwargs.get("env_file"))
        try:
            return fn(*args, **kwargs)
        except TailwartError as exc:
            print(mask_message(str(exc), kwargs.get("env_file")), file=sys.stderr)
            raise Exit(code=exc.exit_code) from None
        except UnexpectedExit as exc:  # a command failed: invoke would print it unmasked
            if exc.result.hide:
                print(mask_message(str(exc), kwargs.get("env_file")), file=sys.stderr, end="")
            raise Exit(code=exc.result.exited or 1) from None
        except (Exit, ParseError, KeyboardInterrupt):
            raise
        except SystemExit as exc:
            if exc.code is None or isinstance(exc.code, int):
                raise
            print(mask_message(str(exc.code), kwargs.get("env_file")), file=sys.stderr)
            raise Exit(code=1) from None
        except BaseException as exc:  # the one error path: no traceback reaches the operator
            if os.environ.get(DEBUG_ENV) == "1":
                import traceback

                text = "".join(traceback.format_exception(exc))
                print(mask_message(text, kwargs.get("env_file")), file=sys.stderr)
            detail = mask_message(str(exc), kwargs.get("env_file")).strip()
            detail = " ".join(detail.split())[:500]
            print(
                f"error: unexpected {type(exc).__name__}"
                + (f": {detail}" if detail else "")
                + f" (nothing more was done; {DEBUG_ENV}=1 shows the traceback)",
                file=sys.stderr,
            )
            raise Exit(code=1) from None
        finally:
            for stream in streams:
                stream.finish()
            sys.stdout, sys.stderr = saved

    return wrapper


def _printable_output(env_file: object) -> tuple[LineStream, LineStream]:
    """Route stdout and stderr through ``LineStream``s: every line a task prints, whatever
    printed it (a server's answer, a certificate's subject, a snapshot's manifest, a
    command's output), has this run's secrets masked and control characters escaped."""
    from typing import cast

    from .masking import LineStream, hide_secrets, printable

    raw: list[tuple[str, ...]] = []

    def clean(line: str) -> str:
        return printable(hide_secrets(line, known_secrets(env_file, raw)))

    out, err = LineStream(sys.stdout, clean), LineStream(sys.stderr, clean)
    sys.stdout, sys.stderr = cast(TextIO, out), cast(TextIO, err)
    return out, err


def _quiet_background_errors(env_file: object) -> None:
    """Threads and finalizers report like the task does: one masked line, no traceback.

    (An exception escaping a worker thread, or raised in a ``__del__``, would otherwise
    be printed by Python with its traceback.)
    """
    import threading

    if os.environ.get(DEBUG_ENV) == "1":
        return

    def one_line(kind: str, exc: BaseException | None) -> None:
        if exc is None or isinstance(exc, SystemExit):
            return
        detail = " ".join(mask_message(str(exc), env_file).split())[:300]
        print(
            f"error: unexpected {type(exc).__name__} {kind}"
            + (f": {detail}" if detail else "")
            + f" ({DEBUG_ENV}=1 shows the traceback)",
            file=sys.stderr,
        )

    threading.excepthook = lambda hook: one_line("in a background thread", hook.exc_value)
    sys.unraisablehook = lambda hook: one_line("while cleaning up", hook.exc_value)


def mask_message(text: str, env_file: object = None) -> str:
    """``text`` with every secret this run knows and every credential shape masked.

    Known: the secrets of settings loaded in this process, secret keys in the process
    environment, and (when no settings were loaded yet) the secret keys of ``env_file``
    read raw, so a crash while loading still masks them.
    """
    from .masking import hide_sensitive

    return hide_sensitive(text, known_secrets(env_file))


def known_secrets(env_file: object = None, raw: list[tuple[str, ...]] | None = None) -> set[str]:
    """The secrets of settings loaded in this process, of secret keys in the process
    environment, and (while no settings were loaded) of ``env_file`` read raw; ``raw``
    keeps that read for the next call."""
    from .masking import remembered_secrets, secret_values_of

    known = remembered_secrets()
    secrets = set(known) | set(secret_values_of(os.environ))
    if not known and isinstance(env_file, str) and env_file:
        raw = [] if raw is None else raw
        if not raw:
            raw.append(_raw_env_secrets(Path(env_file)))
        secrets |= set(raw[0])
    return secrets


def _raw_env_secrets(path: Path) -> tuple[str, ...]:
    """Secret values of an unvalidated .env (regular file, size-capped); () if unreadable."""
    import stat

    from .masking import secret_values_of

    try:
        st = path.stat()
        if not stat.S_ISREG(st.st_mode) or st.st_size > _MASK_READ_LIMIT:
            return ()
        text = path.read_text(encoding="utf-8", errors="replace")
    except (OSError, ValueError):
        return ()
    pairs: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.strip().removeprefix("export ").partition("=")
        if sep:
            value = value.strip()
            if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
                value = value[1:-1]
            pairs[key.strip()] = value
    return secret_values_of(pairs)
