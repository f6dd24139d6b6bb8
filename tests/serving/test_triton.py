"""The config.pbtxt the trainer publishes describes its ONNX graph exactly, field by field, as Triton (KServe's
ONNX runtime) reads it; and the comparison the server uses catches each kind of disagreement."""

from __future__ import annotations

import onnx
import pytest

from makeusrich.serving.triton import ConfigError, as_list, config_problems, parse_pbtxt, read_config
from makeusrich.trainer.export import INPUT_NAME, OUTPUT_NAME, QUANTILES_NAME, triton_config
from tests.fixtures.models import TrainedStore

ONNX_FLOAT = onnx.TensorProto.FLOAT


def published(trained: TrainedStore) -> tuple[str, onnx.ModelProto]:
    """The config and the graph, its shapes as onnxruntime (and so Triton) sees them: resolved by shape
    inference where the exporter left a fixed size symbolic."""
    store = trained.store()
    config = store.read_file(trained.version, store.config_path()).decode()
    model = onnx.load_from_string(store.read_model(trained.version))
    return config, onnx.shape_inference.infer_shapes(model, data_prop=True)


def graph_dims(value: onnx.ValueInfoProto) -> list[int]:
    return [d.dim_value if d.HasField("dim_value") else -1 for d in value.type.tensor_type.shape.dim]


def test_published_config_matches_the_onnx_graph(trained_store_template: TrainedStore) -> None:
    text, model = published(trained_store_template)
    fields = parse_pbtxt(text)
    pair = trained_store_template.pair
    assert fields["name"] == pair.name  # the folder name KServe serves it under
    assert fields["platform"] == "onnxruntime_onnx"
    graph_inputs = {v.name: v for v in model.graph.input if v.name not in {i.name for i in model.graph.initializer}}
    graph_outputs = {v.name: v for v in model.graph.output}
    assert set(graph_inputs) == {INPUT_NAME} and list(graph_outputs) == [OUTPUT_NAME, QUANTILES_NAME]
    max_batch_size = int(fields.get("max_batch_size", 0))
    for key, graph in (("input", graph_inputs), ("output", graph_outputs)):
        declared = as_list(fields[key])
        assert [d["name"] for d in declared] == list(graph)
        for tensor in declared:
            value = graph[tensor["name"]]
            assert value.type.tensor_type.elem_type == ONNX_FLOAT and tensor["data_type"] == "TYPE_FP32"
            dims = graph_dims(value)
            assert dims[0] == -1, "the graph's batch dimension must be dynamic"
            if max_batch_size == 0:  # Triton: dims are the full shape, -1 marks the batch
                assert tensor["dims"] == dims
            else:  # Triton: dims leave the batch out, which max_batch_size bounds
                assert tensor["dims"] == dims[1:]
    model_spec = pair.spec.model
    window, horizon, levels = model_spec.window, model_spec.horizon, len(model_spec.quantiles)
    assert graph_dims(graph_inputs[INPUT_NAME])[1:] == [window, 5]
    assert graph_dims(graph_outputs[OUTPUT_NAME])[1:] == [horizon]
    assert graph_dims(graph_outputs[QUANTILES_NAME])[1:] == [horizon, levels]
    assert config_problems(read_config(text), model, pair.name) == []


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        (lambda t: t.replace('name: "btc-usdt"', 'name: "eth-usdt"'), "name is 'eth-usdt' but the model folder"),
        (lambda t: t.replace("onnxruntime_onnx", "tensorflow_savedmodel"), "platform is 'tensorflow_savedmodel'"),
        (lambda t: t.replace('name: "candles"', 'name: "input"'), "inputs are ['input'] but the graph's are"),
        (lambda t: t.replace("TYPE_FP32", "TYPE_FP64", 1), "input 'candles' is TYPE_FP64 but the graph's is"),
        (lambda t: t.replace("[ -1, 24, 5 ]", "[ -1, 12, 5 ]"), "shape [-1, 12, 5], but the graph's shape is"),
        (lambda t: t.replace("max_batch_size: 0", "max_batch_size: 8"), "meaning shape [-1, -1, 24, 5]"),
        (lambda t: t.replace("[ -1, 1, 5 ]", "[ -1, 1, 3 ]"), "output 'quantiles' has dims [-1, 1, 3]"),
        (lambda t: t.replace("[ -1, 1, 5 ]", "[ -1, 2, 5 ]"), "output 'quantiles' has dims [-1, 2, 5]"),
        (lambda t: t.replace('name: "quantiles"', 'name: "ranges"'), "outputs are ['forecast', 'ranges']"),
    ],
)
def test_each_disagreement_is_named(trained_store_template: TrainedStore, change: object, problem: str) -> None:
    text, model = published(trained_store_template)
    changed = change(text)  # type: ignore[operator]
    assert changed != text
    problems = config_problems(read_config(changed), model, "btc-usdt")
    assert any(problem in p for p in problems), problems


def test_batched_form_with_dims_without_the_batch_is_also_exact(trained_store_template: TrainedStore) -> None:
    text, model = published(trained_store_template)
    batched = text.replace("max_batch_size: 0", "max_batch_size: 64").replace("[ -1, 24, 5 ]", "[ 24, 5 ]")
    batched = batched.replace("[ -1, 1 ]", "[ 1 ]").replace("[ -1, 1, 5 ]", "[ 1, 5 ]")
    assert config_problems(read_config(batched), model, "btc-usdt") == []


def test_parser_reads_the_text_format_as_config_files_use_it() -> None:
    text = """
    # a comment
    name: "m"   platform: 'onnxruntime_onnx'
    max_batch_size: 8
    input { name: "a" data_type: TYPE_FP32 dims: [ 3, -1 ] }
    input { name: "b", data_type: TYPE_INT64, dims: 2 }
    output [ { name: "y" data_type: TYPE_FP32 dims: [ 1 ] reshape: { shape: [ ] } } ]
    dynamic_batching { preferred_batch_size: [ 4, 8 ] max_queue_delay_microseconds: 100 }
    parameters { key: "x" value: { string_value: "a \\"quoted\\" b" } }
    optimization { cuda { graphs: true } }
    """
    fields = parse_pbtxt(text)
    assert fields["name"] == "m" and fields["platform"] == "onnxruntime_onnx" and fields["max_batch_size"] == 8
    assert [i["name"] for i in fields["input"]] == ["a", "b"] and fields["input"][1]["dims"] == 2
    assert fields["output"] == [{"name": "y", "data_type": "TYPE_FP32", "dims": [1], "reshape": {"shape": []}}]
    assert fields["dynamic_batching"]["preferred_batch_size"] == [4, 8]
    assert fields["parameters"]["value"]["string_value"] == 'a "quoted" b'
    assert fields["optimization"]["cuda"]["graphs"] is True
    config = read_config(text)
    assert [(t.name, t.shape) for t in config.inputs] == [("a", (3, -1)), ("b", (2,))]


@pytest.mark.parametrize("text", ['name: "m" input {', "input [ { name: 1 ]", 'name "m" @'])
def test_parser_refuses_broken_text(text: str) -> None:
    with pytest.raises(ConfigError):
        parse_pbtxt(text)


def test_trainer_config_function_is_what_was_published(trained_store_template: TrainedStore) -> None:
    text, _ = published(trained_store_template)
    assert text == triton_config("btc-usdt", 24, 1, 5)
