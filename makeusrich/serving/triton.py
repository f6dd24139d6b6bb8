"""Triton model repositories: reading config.pbtxt and comparing it with the ONNX graph it describes.

KServe's ONNX runtime in a cluster is Triton, which trusts config.pbtxt: a name, datatype or dimension that
disagrees with the graph fails there at load time, far from the trainer that wrote it. This server reads the
same files (`serve --model-dir`) and refuses such a model with the disagreement spelled out.

The parser covers the protobuf text format as config files use it: `key: value`, `key { ... }`,
`key [ {...}, ... ]`, `key: [ 1, 2 ]`, strings, numbers, enum names and `#` comments. A repeated key becomes a
list. It is not a full protobuf implementation (no type URLs, no extensions).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from makeusrich.contract import TensorSpec
from makeusrich.errors import ConfigError

_TOKEN = re.compile(
    r"""\s*(?:
        (?P<comment>\#[^\n]*)
      | (?P<string>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*')
      | (?P<number>[-+]?(?:\d+\.\d*|\.\d+|\d+)(?:[eE][-+]?\d+)?)
      | (?P<ident>[A-Za-z_][A-Za-z0-9_.]*)
      | (?P<punct>[{}\[\]:,;<>])
    )""",
    re.VERBOSE,
)

# ONNX TensorProto element types -> Triton config names.
ONNX_TO_TRITON = {1: "TYPE_FP32", 10: "TYPE_FP16", 11: "TYPE_FP64", 6: "TYPE_INT32", 7: "TYPE_INT64"}


def _tokens(text: str) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    pos = 0
    text = text.rstrip()
    while pos < len(text):
        match = _TOKEN.match(text, pos)
        if match is None or match.end() == pos:
            line = text.count("\n", 0, pos) + 1
            raise ConfigError(f"config.pbtxt line {line}: cannot read {text[pos : pos + 20].strip()!r}")
        pos = match.end()
        kind = match.lastgroup or ""
        if kind != "comment":
            out.append((kind, match.group(kind)))
    return out


class _Parser:
    def __init__(self, text: str) -> None:
        self.tokens = _tokens(text)
        self.pos = 0

    def take(self) -> tuple[str, str]:
        if self.pos == len(self.tokens):
            raise ConfigError("config.pbtxt ends early")
        self.pos += 1
        return self.tokens[self.pos - 1]

    def item(self, closing: str | None, separators: str) -> tuple[str, str] | None:
        """The next token of a message or list, past separators; None once past `closing` (or the end, at the
        top level)."""
        while self.pos < len(self.tokens):
            token = self.take()
            if token[1] == closing:
                return None
            if token[1] not in separators:
                return token
        if closing is not None:
            raise ConfigError(f"config.pbtxt ends before a closing {closing!r}")
        return None

    def message(self, closing: str | None) -> dict[str, Any]:
        fields: dict[str, Any] = {}
        while (token := self.item(closing, ",;")) is not None:
            kind, key = token
            if kind != "ident":
                raise ConfigError(f"config.pbtxt: expected a field name, found {key!r}")
            if self.pos < len(self.tokens) and self.tokens[self.pos][1] == ":":
                self.pos += 1
            value = self.value(self.take())
            fields[key] = [*as_list(fields[key]), value] if key in fields else value
        return fields

    def value(self, token: tuple[str, str]) -> Any:
        kind, text = token
        if text in ("{", "<"):
            return self.message("}" if text == "{" else ">")
        if text == "[":
            items: list[Any] = []
            while (item := self.item("]", ",")) is not None:
                items.append(self.value(item))
            return items
        if kind == "string":
            return bytes(text[1:-1], "utf-8").decode("unicode_escape")
        if kind == "number":
            return float(text) if any(c in text for c in ".eE") else int(text)
        if kind == "ident":
            return {"true": True, "false": False}.get(text, text)
        raise ConfigError(f"config.pbtxt: unexpected {text!r}")


def parse_pbtxt(text: str) -> dict[str, Any]:
    """A config.pbtxt as nested dicts and lists."""
    return _Parser(text).message(None)


def as_list(value: Any) -> list[Any]:
    """A field that may be written once or repeated, as a list."""
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


@dataclass(frozen=True)
class TritonConfig:
    """The fields of config.pbtxt that must agree with the model file. Its tensors carry Triton's type names
    (TYPE_FP32) and Triton's dims (without the batch dimension when max_batch_size > 0)."""

    name: str
    platform: str
    max_batch_size: int
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]


def read_config(text: str) -> TritonConfig:
    fields = parse_pbtxt(text)

    def tensors(key: str) -> tuple[TensorSpec, ...]:
        return tuple(tensor(key, item) for item in as_list(fields.get(key)))

    def tensor(key: str, item: Any) -> TensorSpec:
        if not isinstance(item, dict) or not {"name", "data_type", "dims"} <= item.keys():
            raise ConfigError(f"config.pbtxt: every {key} needs name, data_type and dims")
        return TensorSpec(str(item["name"]), str(item["data_type"]), tuple(int(d) for d in as_list(item["dims"])))

    return TritonConfig(
        name=str(fields.get("name", "")),
        platform=str(fields.get("platform", fields.get("backend", ""))),
        max_batch_size=int(fields.get("max_batch_size", 0)),
        inputs=tensors("input"),
        outputs=tensors("output"),
    )


def graph_tensors(model: Any) -> tuple[list[TensorSpec], list[TensorSpec]]:
    """Inputs and outputs of an onnx.ModelProto as config tensors (a symbolic or unknown dimension is -1)."""

    def convert(value: Any) -> TensorSpec:
        tensor_type = value.type.tensor_type
        dims = tuple(d.dim_value if d.HasField("dim_value") else -1 for d in tensor_type.shape.dim)
        return TensorSpec(value.name, ONNX_TO_TRITON.get(tensor_type.elem_type, f"ONNX_{tensor_type.elem_type}"), dims)

    initializers = {init.name for init in model.graph.initializer}
    inputs = [convert(v) for v in model.graph.input if v.name not in initializers]
    return inputs, [convert(v) for v in model.graph.output]


def config_problems(config: TritonConfig, model: Any, folder_name: str | None = None) -> list[str]:
    """Each way config.pbtxt disagrees with the ONNX graph (empty when it describes the model exactly)."""
    problems = []
    if folder_name is not None and config.name and config.name != folder_name:
        problems.append(f"name is {config.name!r} but the model folder is {folder_name!r}")
    if config.platform not in ("onnxruntime_onnx", "onnxruntime"):
        problems.append(f"platform is {config.platform!r}, not 'onnxruntime_onnx'")
    if config.max_batch_size < 0:
        problems.append(f"max_batch_size is {config.max_batch_size}")
    graph_inputs, graph_outputs = graph_tensors(model)
    for kind, declared, actual in (("input", config.inputs, graph_inputs), ("output", config.outputs, graph_outputs)):
        by_name = {t.name: t for t in actual}
        if {t.name for t in declared} != set(by_name):
            problems.append(f"{kind}s are {sorted(t.name for t in declared)} but the graph's are {sorted(by_name)}")
            continue
        for tensor in declared:
            graph = by_name[tensor.name]
            if tensor.datatype != graph.datatype:
                problems.append(f"{kind} {tensor.name!r} is {tensor.datatype} but the graph's is {graph.datatype}")
            shape = (-1, *tensor.shape) if config.max_batch_size > 0 else tensor.shape  # the shape the model sees
            if shape != graph.shape:
                problems.append(
                    f"{kind} {tensor.name!r} has dims {list(tensor.shape)} with max_batch_size "
                    f"{config.max_batch_size}, meaning shape {list(shape)}, but the graph's shape is "
                    f"{list(graph.shape)}"
                )
            elif config.max_batch_size > 0 and (not graph.shape or graph.shape[0] != -1):
                problems.append(f"max_batch_size > 0 needs a variable first dimension on {kind} {tensor.name!r}")
    return problems
