"""The hand-written stub `toolmesh/_native.pyi` describes the native module as built: the same
functions and classes, each class's methods and attributes, and each callable's parameters
(names, and which have a default). A change to src/*.rs that the stub does not follow fails here."""

from __future__ import annotations

import ast
import inspect
from pathlib import Path
from typing import Any

import toolmesh
from toolmesh import _native

STUB = Path(__file__).resolve().parents[1] / "python" / "toolmesh" / "_native.pyi"


def parameters_of_stub(function: ast.FunctionDef) -> list[str]:
    """`name` or `name=` (with a default), without `self`."""
    arguments = function.args
    positional = arguments.posonlyargs + arguments.args
    defaults = [None] * (len(positional) - len(arguments.defaults)) + list(arguments.defaults)
    shown = [a.arg + ("=" if d is not None else "") for a, d in zip(positional, defaults) if a.arg != "self"]
    shown += [a.arg + ("=" if d is not None else "") for a, d in zip(arguments.kwonlyargs, arguments.kw_defaults)]
    return shown


def parameters_of_native(function: Any) -> list[str]:
    """The same, from the signature pyo3 records (`__text_signature__`)."""
    signature = inspect.signature(function)
    return [name + ("=" if p.default is not inspect.Parameter.empty else "")
            for name, p in signature.parameters.items() if name not in ("self", "$self")]


def describe_stub() -> dict[str, Any]:
    """What the stub declares: {function: [parameters]}, {class: {member: [parameters] | "attribute"}}."""
    described: dict[str, Any] = {}
    for node in ast.parse(STUB.read_text(), str(STUB)).body:
        if isinstance(node, ast.FunctionDef):
            described[node.name] = parameters_of_stub(node)
        elif isinstance(node, ast.ClassDef):
            members: dict[str, Any] = {}
            for item in node.body:
                if isinstance(item, ast.FunctionDef):
                    members[item.name] = parameters_of_stub(item)
                elif isinstance(item, ast.AnnAssign) and isinstance(item.target, ast.Name):
                    members[item.target.id] = "attribute"
            described[node.name] = members
    return described


def describe_native() -> dict[str, Any]:
    """The same, read from the imported native module."""
    described: dict[str, Any] = {}
    for name, value in vars(_native).items():
        if name.startswith("_"):
            continue
        if isinstance(value, type):
            members: dict[str, Any] = {}
            for member, attribute in vars(value).items():
                if member.startswith("_"):
                    continue
                members[member] = "attribute" if inspect.isdatadescriptor(attribute) else parameters_of_native(attribute)
            described[name] = members
        elif callable(value):
            described[name] = parameters_of_native(value)
    return described


def differences(stub: dict[str, Any], native: dict[str, Any], prefix: str = "") -> list[str]:
    found = []
    for name in sorted(stub.keys() | native.keys()):
        where = f"{prefix}{name}"
        if name not in native:
            found.append(f"{where}: in _native.pyi, not in the native module")
        elif name not in stub:
            found.append(f"{where}: in the native module ({native[name]}), not in _native.pyi")
        elif isinstance(stub[name], dict) and isinstance(native[name], dict):
            found += differences(stub[name], native[name], prefix=f"{where}.")
        elif stub[name] != native[name]:
            found.append(f"{where}: _native.pyi says {stub[name]}, the native module has {native[name]}")
    return found


def test_the_stub_matches_the_native_module() -> None:
    assert Path(toolmesh.__file__).parent.joinpath("_native.pyi").read_text() == STUB.read_text(), (
        "the installed wheel carries another _native.pyi than this tree: rebuild it (scripts/python-env.sh)")
    drift = differences(describe_stub(), describe_native())
    assert not drift, "bindings-python/python/toolmesh/_native.pyi has drifted from src/*.rs:\n  " + "\n  ".join(drift)


def test_the_comparison_sees_drift() -> None:
    """A stub that lost a method or a function, gained a parameter or a class is reported, each by name."""
    stub = describe_stub()
    stub["Responder"] = {k: v for k, v in stub["Responder"].items() if k != "not_json"}
    stub["start"] = stub["start"] + ["extra"]
    del stub["close_dispatch"]
    stub["Gone"] = {}
    assert differences(stub, describe_native()) == [
        "Gone: in _native.pyi, not in the native module",
        "Responder.not_json: in the native module (['reason']), not in _native.pyi",
        "close_dispatch: in the native module ([]), not in _native.pyi",
        "start: _native.pyi says ['name', 'options', 'tools_json', 'catalog_json', 'on_invoke', 'on_catalog', 'future', "
        "'extra'], the native module has ['name', 'options', 'tools_json', 'catalog_json', 'on_invoke', 'on_catalog', "
        "'future']",
    ]
