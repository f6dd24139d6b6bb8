"""Make Us Rich: train, serve and watch cryptocurrency forecasting models.

The package's layers, from the top; a layer imports only from the layers below it, and the parts of one layer
never import each other (import-linter contracts in pyproject.toml, run by `make lint`):

    cli                                        the `makeusrich` command
    local                                      `makeusrich up`: the single-machine runner
    trainer | serving | operator | track | ui  the components (each third-party library has one room: torch the
                                               trainer, kserve serving, kopf the operator, nicegui the ui)
    settings                                   every command's settings, flags and variables, and the pieces
                                               the component CLIs share
    pair_sources                               where pairs come from: pair files, or CurrencyPair resources
    scoring | v2client | onnxrt | kube         metrics, baselines and decision rules (numpy); the v2 inference
                                               client (httpx); onnxruntime sessions; the Kubernetes API client
    market | store                             candles (python-binance in market.binance); the model store and
                                               its documents (minio in store.s3); neither imports the other
    pair                                       the CurrencyPair schema, its files and its CRD
    log | net                                  logging; sockets and Retry-After
    contract | errors                          what every component shares; the error tree

Each subpackage says what it offers in its `__init__` (`__all__`); callers import that.
"""

from importlib.metadata import version

# The package's version is written once, in pyproject.toml; the chart's (Chart.yaml) is checked equal to it.
__version__ = version("makeusrich")
