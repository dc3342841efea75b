"""docs/configuration.md, written from the settings dataclasses: each variable's name, default and range, from code.

`python -m gateway.settings_doc` (or `make docs`) writes the page; `--check` exits 1 when the committed page differs.
A field's docstring names its variable (`CASEBRIDGE_X: what it does`); the default and the range are read from the
one call in gateway/settings.py that reads that variable, so each default is written once, in the code.
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import inspect
import operator
import sys
import typing
from collections.abc import Callable
from pathlib import Path

from gateway import settings as settings_module

PAGE = Path("docs/configuration.md")
_READERS = {"integer", "text", "optional"}  # the _Env methods; _flag reads a boolean
_ARITHMETIC: dict[type[ast.operator], Callable[[int, int], int]] = {
    ast.Mult: operator.mul,
    ast.Add: operator.add,
    ast.Sub: operator.sub,
}
_INTRO = """\
# Configuration

<!-- Written by `make docs` from the settings dataclasses in gateway/settings.py; edit the field docs there. -->

The server and every `casebridge` command read these variables, and only these, in
[gateway/settings.py](../gateway/settings.py): one dataclass per concern, built once when the program starts. An
empty value counts as unset. A value that cannot be used stops the program with a message naming the variable.
Integers must lie in the range shown. Secrets have no default.
"""


@dataclasses.dataclass(frozen=True, slots=True)
class Variable:
    name: str
    doc: str
    default: str
    range: str


@dataclasses.dataclass(frozen=True, slots=True)
class Concern:
    title: str
    dataclass: str
    variables: tuple[Variable, ...]


class SettingsDocError(Exception):
    """gateway/settings.py cannot be read into the page; the message says which field or variable."""


def concerns() -> list[Concern]:
    """The settings, one concern per field of `Settings`, in the order they are declared."""
    tree = ast.parse(inspect.getsource(settings_module))
    docs = _field_docs(tree)
    reads = _reads(tree)
    documented: set[str] = set()
    found = []
    hints = typing.get_type_hints(settings_module.Settings)
    for concern in dataclasses.fields(settings_module.Settings):
        cls = hints[concern.name]
        variables = []
        for item in dataclasses.fields(cls):
            doc = docs.get((cls.__name__, item.name))
            if doc is None:
                raise SettingsDocError(f"{cls.__name__}.{item.name} has no docstring")
            name, sep, text = doc.partition(": ")
            if not (sep and name.startswith("CASEBRIDGE_")):
                continue  # derived from other settings, not read from a variable of its own
            if name not in reads:
                raise SettingsDocError(f"{cls.__name__}.{item.name} names {name}, which settings.py never reads")
            if name in documented:
                raise SettingsDocError(f"{name} is documented by two fields")
            documented.add(name)
            variables.append(Variable(name, text, *reads[name]))
        found.append(Concern(concern.name.replace("_", " ").capitalize(), cls.__name__, tuple(variables)))
    undocumented = sorted(set(reads) - documented)
    if undocumented:
        raise SettingsDocError(f"no field's docstring names {', '.join(undocumented)}")
    return found


def render() -> str:
    lines = [_INTRO]
    for concern in concerns():
        if not concern.variables:
            continue
        lines += [
            f"## {concern.title}",
            "",
            f"`{concern.dataclass}` in [gateway/settings.py](../gateway/settings.py).",
            "",
            "| variable | default | range | meaning |",
            "|---|---|---|---|",
        ]
        lines += [f"| `{v.name}` | {v.default} | {v.range} | {_cell(v.doc)} |" for v in concern.variables]
        lines.append("")
    return "\n".join(lines)


def _field_docs(tree: ast.Module) -> dict[tuple[str, str], str]:
    """(class, field) -> the docstring written under the field, whitespace folded."""
    docs = {}
    for cls in (node for node in tree.body if isinstance(node, ast.ClassDef)):
        for field, after in zip(cls.body, cls.body[1:], strict=False):
            if (
                isinstance(field, ast.AnnAssign)
                and isinstance(field.target, ast.Name)
                and isinstance(after, ast.Expr)
                and isinstance(after.value, ast.Constant)
                and isinstance(after.value.value, str)
            ):
                docs[cls.name, field.target.id] = " ".join(after.value.value.split())
    return docs


def _reads(tree: ast.Module) -> dict[str, tuple[str, str]]:
    """Variable name -> (default, range) from the one call that reads it."""
    found: dict[str, tuple[str, str]] = {}
    for call in (node for node in ast.walk(tree) if isinstance(node, ast.Call)):
        read = _read(call)
        if read is None:
            continue
        name, default, low, high = read
        if name in found:
            raise SettingsDocError(f"{name} is read twice in gateway/settings.py")
        found[name] = (
            "unset" if default is None else _default(name, default),
            "" if low is None or high is None else f"{_number(low)}–{_number(high)}",
        )
    return found


def _read(call: ast.Call) -> tuple[str, ast.expr | None, ast.expr | None, ast.expr | None] | None:
    keywords = {k.arg: k.value for k in call.keywords}
    if isinstance(call.func, ast.Attribute) and call.func.attr in _READERS:
        args = call.args
    elif isinstance(call.func, ast.Name) and call.func.id == "_flag":
        args = call.args[1:]
    else:
        return None
    if not (args and isinstance(args[0], ast.Constant) and str(args[0].value).startswith("CASEBRIDGE_")):
        return None
    default = args[1] if len(args) > 1 else keywords.get("default")
    return str(args[0].value), default, keywords.get("low"), keywords.get("high")


def _default(name: str, node: ast.expr) -> str:
    if isinstance(node, ast.Constant) and isinstance(node.value, bool):
        return f"`{str(node.value).lower()}`"
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return f"`{node.value}`"
    if isinstance(node, ast.JoinedStr):
        return f"`{''.join(_template(part) for part in node.values)}`"
    try:
        number = _evaluate(node)
    except SettingsDocError:
        return f"`{ast.unparse(node)}`"
    return f"`{number}` ({_size(number)})" if name.endswith("_BYTES") else f"`{number}`"


def _template(node: ast.expr) -> str:
    """An f-string default in the words of the page: `{data_dir / 'x.db'}` reads DATA_DIR/x.db."""
    if isinstance(node, ast.Constant):
        return str(node.value)
    if isinstance(node, ast.FormattedValue):
        return _template(node.value)
    if isinstance(node, ast.Name):
        return node.id.upper()
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Div):
        return f"{_template(node.left)}/{_template(node.right)}"
    raise SettingsDocError(f"cannot write the default {ast.unparse(node)!r} in words")


def _number(node: ast.expr) -> str:
    return str(_evaluate(node))


def _evaluate(node: ast.expr) -> int:
    if isinstance(node, ast.Constant) and isinstance(node.value, int) and not isinstance(node.value, bool):
        return node.value
    if isinstance(node, ast.BinOp) and type(node.op) in _ARITHMETIC:
        return _ARITHMETIC[type(node.op)](_evaluate(node.left), _evaluate(node.right))
    raise SettingsDocError(f"{ast.unparse(node)!r} is not a number")


def _size(count: int) -> str:
    for unit, size in (("MiB", 1024 * 1024), ("KiB", 1024)):
        if count % size == 0:
            return f"{count // size} {unit}"
    return f"{count} bytes"


def _cell(text: str) -> str:
    return (text[:1].upper() + text[1:]).replace("|", "\\|")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m gateway.settings_doc", description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=PAGE, help="the page to write (default: %(default)s)")
    parser.add_argument("--check", action="store_true", help="exit 1 when the page differs; write nothing")
    args = parser.parse_args(argv)
    try:
        page = render()
    except SettingsDocError as exc:
        print(f"settings_doc: error: {exc}", file=sys.stderr)
        return 1
    if args.check:
        current = args.out.read_text(encoding="utf-8") if args.out.exists() else ""
        if current != page:
            print(f"settings_doc: {args.out} is out of date; run `make docs`", file=sys.stderr)
            return 1
        return 0
    args.out.write_text(page, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
