"""Make Us Rich: train, serve and watch cryptocurrency forecasting models.

The package's layers, from the top; a layer imports only from the layers below it, and the parts of one layer
never import each other (import-linter contracts in pyproject.toml, run by `make lint`):

    cli                                   the `makeusrich` command
    local                                 `makeusrich up`: the single-machine runner
    trainer | serving | operator | ui     the components (only trainer imports torch, only ui nicegui,
                                          only operator kopf)
    cliargs                               command-line pieces the components share
    scoring | v2client | onnxrt | kube    metrics and baselines (numpy); the v2 inference client (httpx);
                                          onnxruntime sessions; the Kubernetes API client (httpx)
    market | store                        candles; the model store (neither imports the other)
    pair                                  the CurrencyPair schema
    environment | log | net | metadata    environment variables, logging, sockets and Retry-After;
                                          metadata.json (contract 3) as a pydantic model
    contract | errors                     what every component shares; the error tree
"""

__version__ = "0.1.0"
