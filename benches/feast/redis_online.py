"""Feast's own Python SDK on Feast's Redis online store: the peer of keel's Redis store
benchmark (benches/src/bin/redis_load.rs runs it in the same run, on the same Redis server).

Writes the same values as keel's harness (entity i, feature f: (i * 31 + f + h) * 0.5 with
h = history - 1, the newest row), then times `FeatureStore.get_online_features(...).to_dict()`
(the SDK's documented online path) for 1 and 100 entities. Prints one JSON object with
microsecond percentiles.

usage: redis_online.py PORT ENTITIES FEATURES HISTORY ITERATIONS
"""

import json
import os
import random
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone

import pandas as pd
from feast import Entity, FeatureStore, FeatureView, Field, FileSource, ValueType
from feast.infra.online_stores.redis import RedisOnlineStoreConfig
from feast.repo_config import RepoConfig
from feast.types import Float64


def percentiles(samples):
    samples = sorted(samples)
    at = lambda q: samples[min(int(len(samples) * q), len(samples) - 1)]
    return {"p50_us": at(0.5) * 1e6, "p99_us": at(0.99) * 1e6}


def main():
    port, entities, features, history, iterations = (int(a) for a in sys.argv[1:6])
    repo = tempfile.mkdtemp(prefix="keel-feast-")
    h = history - 1
    ts = datetime.fromtimestamp(1_700_000_000 + h * 3600, tz=timezone.utc)
    data = {"user_id": list(range(entities)), "event_timestamp": [ts] * entities}
    for f in range(features):
        data[f"f{f}"] = [(i * 31 + f + h) * 0.5 for i in range(entities)]
    df = pd.DataFrame(data)
    source_path = os.path.join(repo, "user_features.parquet")
    df.to_parquet(source_path)

    config = RepoConfig(
        project="keelbench",
        registry=os.path.join(repo, "registry.db"),
        provider="local",
        online_store=RedisOnlineStoreConfig(connection_string=f"127.0.0.1:{port}"),
        entity_key_serialization_version=3,
    )
    store = FeatureStore(config=config)
    user = Entity(name="user", join_keys=["user_id"], value_type=ValueType.INT64)
    view = FeatureView(
        name="user_features",
        entities=[user],
        ttl=timedelta(days=36500),
        schema=[Field(name=f"f{f}", dtype=Float64) for f in range(features)],
        source=FileSource(path=source_path, timestamp_field="event_timestamp"),
        online=True,
    )
    store.apply([user, view])
    t = time.perf_counter()
    store.write_to_online_store("user_features", df)
    write_s = time.perf_counter() - t

    refs = [f"user_features:f{f}" for f in range(features)]
    rng = random.Random(7)
    # Check one answer against the values keel's harness writes.
    got = store.get_online_features(features=refs, entity_rows=[{"user_id": 3}]).to_dict()
    assert got["f0"][0] == (3 * 31 + 0 + h) * 0.5, got["f0"]

    out = {"feast": __import__("feast").__version__, "write_rows_per_s": entities / write_s}
    for batch in (1, 100):
        samples = []
        for _ in range(iterations if batch == 1 else max(iterations // 20, 50)):
            rows = [{"user_id": rng.randrange(entities)} for _ in range(batch)]
            t = time.perf_counter()
            store.get_online_features(features=refs, entity_rows=rows).to_dict()
            samples.append(time.perf_counter() - t)
        # The first tenth warms caches (registry, connections) and is dropped.
        out[f"get_{batch}"] = percentiles(samples[len(samples) // 10 :])
    print(json.dumps(out))


if __name__ == "__main__":
    main()
