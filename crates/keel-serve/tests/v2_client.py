"""A real V2 client, NVIDIA's `tritonclient[http]`, against keel's server.

Run by `tests/http.rs` as `python v2_client.py HOST:PORT SPEC_JSON` where SPEC_JSON holds the
entity keys to score and keel's in-process scores for them. Checks liveness, readiness, model
metadata, and inference with binary tensors both ways and with plain JSON; prints `ok`.
"""
import json
import sys

import numpy as np
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

addr, spec = sys.argv[1], json.loads(sys.argv[2])
client = httpclient.InferenceServerClient(url=addr)
assert client.is_server_live()
assert client.is_server_ready()
assert client.is_model_ready("fraud")
meta = client.get_model_metadata("fraud")
names = [i["name"] for i in meta["inputs"]]
assert names == ["card_id", "amount", "risk", "country"], meta
assert meta["outputs"][0]["name"] == "predict", meta

cards = np.array([c.encode() for c in spec["cards"]], dtype=np.object_)
want = np.array(spec["want"], dtype=np.float64)
for binary in (True, False):
    card_id = httpclient.InferInput("card_id", [len(cards)], "BYTES")
    card_id.set_data_from_numpy(cards, binary_data=binary)
    outputs = [
        httpclient.InferRequestedOutput("predict", binary_data=binary),
        httpclient.InferRequestedOutput("route", binary_data=binary),
    ]
    res = client.infer("fraud", [card_id], outputs=outputs, request_id="t-1")
    got = res.as_numpy("predict")
    assert got.dtype == np.float64 and np.array_equal(got, want), (binary, got, want)
    routes = [r.decode() if isinstance(r, bytes) else r for r in res.as_numpy("route")]
    assert routes == ["champion"] * len(cards), routes
    print("binary" if binary else "json", got.tolist())
    assert res.get_response()["id"] == "t-1"

# A request-time value next to the stored features (FP32 from numpy, binary).
amount = httpclient.InferInput("amount", [len(cards)], "FP32")
amount.set_data_from_numpy(np.full(len(cards), 50.0, dtype=np.float32))
card_id = httpclient.InferInput("card_id", [len(cards)], "BYTES")
card_id.set_data_from_numpy(cards)
res = client.infer("fraud", [card_id, amount])
assert res.as_numpy("predict").shape == (len(cards),)

try:
    client.infer("nope", [card_id])
    raise SystemExit("an unknown model must fail")
except InferenceServerException as e:
    assert "nope" in str(e), e
print("ok")
