"""The model store (contract 3): S3/MinIO or a local folder behind one interface, one layout.

    location     a store's URL or folder, checked without I/O, and opening it
    base         versions: naming, publishing (crash-safe, verified before latest.json), promotion, pruning;
                 the candle cache
    documents    the stored documents as pydantic models: metadata.json, backtests, run state, track.json
    reader       reading many pairs at once (the dashboard, the operator, the tracker), with a metadata cache
    runs         `makeusrich up`'s training runs: state.json and logs
    backtests    a version's walk-forward backtest
    track        one pair's track record files (month files and track.json)
    local, s3    the two object stores (S3 only through `open_store`: it imports minio)

Callers import from this package. Two modules are imported by name on purpose: makeusrich.store.track_schema (the
track rows' columns: it imports pandas, which the operator does without) and makeusrich.store.s3 (minio).
"""

from makeusrich.store.backtests import read_backtest, write_backtest
from makeusrich.store.base import (
    LATEST,
    METADATA,
    Latest,
    ObjectStore,
    PairStore,
    Why,
    check_version,
    new_version,
    sha256,
    version_time,
)
from makeusrich.store.documents import (
    ESTIMATOR_NAMES,
    MODEL_KINDS,
    BacktestResult,
    BaselineInfo,
    Calibration,
    ChampionCheck,
    Change,
    DataSpan,
    DecisionMetrics,
    DecisionValue,
    DetectorState,
    Difference,
    Directional,
    Epoch,
    Equity,
    FoldResult,
    Gate,
    LiveWindow,
    Metrics,
    ModelMetadata,
    Pool,
    Promotion,
    RangeCoverage,
    RangeMetrics,
    RangeScore,
    RatioInterval,
    RoleSpan,
    Rules,
    RuleScore,
    RunEvidence,
    RunState,
    Score,
    ShadowSums,
    SmokeTest,
    SplitMetrics,
    TrackSummary,
    Training,
    parse_metadata,
)
from makeusrich.store.local import LocalStore, atomic_write
from makeusrich.store.location import (
    DEFAULT_STORE,
    STORE_ENV,
    STORE_HELP,
    open_store,
    pair_store,
    storage_uri,
    store_location,
)
from makeusrich.store.reader import Damaged, Readable, StoreReader, StoreSummary
from makeusrich.store.runs import read_run_state, write_run_log, write_run_state
from makeusrich.store.track import TrackFiles

__all__ = [
    "DEFAULT_STORE",
    "ESTIMATOR_NAMES",
    "LATEST",
    "METADATA",
    "MODEL_KINDS",
    "STORE_ENV",
    "STORE_HELP",
    "BacktestResult",
    "BaselineInfo",
    "Calibration",
    "ChampionCheck",
    "Change",
    "Damaged",
    "DataSpan",
    "DecisionMetrics",
    "DecisionValue",
    "DetectorState",
    "Difference",
    "Directional",
    "Epoch",
    "Equity",
    "FoldResult",
    "Gate",
    "Latest",
    "LiveWindow",
    "LocalStore",
    "Metrics",
    "ModelMetadata",
    "ObjectStore",
    "PairStore",
    "Pool",
    "Promotion",
    "RangeCoverage",
    "RangeMetrics",
    "RangeScore",
    "RatioInterval",
    "Readable",
    "RoleSpan",
    "RuleScore",
    "Rules",
    "RunEvidence",
    "RunState",
    "Score",
    "ShadowSums",
    "SmokeTest",
    "SplitMetrics",
    "StoreReader",
    "StoreSummary",
    "TrackFiles",
    "TrackSummary",
    "Training",
    "Why",
    "atomic_write",
    "check_version",
    "new_version",
    "open_store",
    "pair_store",
    "parse_metadata",
    "read_backtest",
    "read_run_state",
    "sha256",
    "storage_uri",
    "store_location",
    "version_time",
    "write_backtest",
    "write_run_log",
    "write_run_state",
]
