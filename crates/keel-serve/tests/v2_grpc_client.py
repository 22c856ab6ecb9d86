"""A real V2 gRPC client, NVIDIA's `tritonclient[grpc]`, against keel's gRPC endpoint.

Run by `tests/it/http.rs` as `python v2_grpc_client.py HOST:PORT SPEC_JSON` where SPEC_JSON
holds the entity keys to score and keel's in-process scores for them. Checks liveness,
readiness, metadata, inference with BYTES, FP32, FP64 and INT64 inputs (raw contents, as
tritonclient sends them), a batch, and that malformed requests come back as errors; prints `ok`.
"""
import json
import sys

import numpy as np
import tritonclient.grpc as grpcclient
from tritonclient.utils import InferenceServerException

addr, spec = sys.argv[1], json.loads(sys.argv[2])
client = grpcclient.InferenceServerClient(url=addr)
assert client.is_server_live()
assert client.is_server_ready()
assert client.is_model_ready("fraud")
meta = client.get_model_metadata("fraud", as_json=True)
names = [i["name"] for i in meta["inputs"]]
assert names == ["card_id", "amount", "risk", "country"], meta
assert meta["outputs"][0]["name"] == "predict", meta
server = client.get_server_metadata(as_json=True)
assert server["name"] == "keel", server

cards = np.array([c.encode() for c in spec["cards"]], dtype=np.object_)
want = np.array(spec["want"], dtype=np.float64)
card_id = grpcclient.InferInput("card_id", [len(cards)], "BYTES")
card_id.set_data_from_numpy(cards)
res = client.infer(
    "fraud",
    [card_id],
    outputs=[grpcclient.InferRequestedOutput("predict"), grpcclient.InferRequestedOutput("route")],
    request_id="g-1",
)
got = res.as_numpy("predict")
assert got.dtype == np.float64 and np.array_equal(got, want), (got, want)
routes = [r.decode() if isinstance(r, bytes) else r for r in res.as_numpy("route")]
assert routes == ["champion"] * len(cards), routes
assert res.get_response().id == "g-1"
print("grpc", got.tolist())

# Request-time values next to the stored features, as FP32, FP64 and INT64 tensors.
for dtype, np_type in (("FP32", np.float32), ("FP64", np.float64)):
    amount = grpcclient.InferInput("amount", [len(cards)], dtype)
    amount.set_data_from_numpy(np.full(len(cards), 50.0, dtype=np_type))
    res = client.infer("fraud", [card_id, amount])
    assert res.as_numpy("predict").shape == (len(cards),), dtype
    assert res.as_numpy("model_version").dtype == np.int64
risk = grpcclient.InferInput("risk", [len(cards)], "INT64")
risk.set_data_from_numpy(np.array([1] * len(cards), dtype=np.int64))
res = client.infer("fraud", [card_id, risk])
assert res.as_numpy("predict").shape == (len(cards),)

# A batch of 200 rows in one request.
many = np.array([c.encode() for c in spec["cards"]] * 67, dtype=np.object_)[:200]
big = grpcclient.InferInput("card_id", [len(many)], "BYTES")
big.set_data_from_numpy(many)
res = client.infer("fraud", [big])
assert res.as_numpy("predict").shape == (200,)

# Malformed requests are errors, not hangs or crashes.
for bad in (
    lambda: client.infer("nope", [card_id]),
    lambda: client.infer("fraud", [grpcclient.InferInput("what", [1], "BYTES")]),
):
    try:
        bad()
        raise SystemExit("a malformed request must fail")
    except InferenceServerException as e:
        print("refused:", e.status(), str(e).splitlines()[0][:80])
# A datatype keel does not take (FP16) is refused by the server with INVALID_ARGUMENT.
half = grpcclient.InferInput("amount", [1], "FP16")
half.set_data_from_numpy(np.array([1.0], dtype=np.float16))
one = grpcclient.InferInput("card_id", [1], "BYTES")
one.set_data_from_numpy(np.array([b"card3"], dtype=np.object_))
try:
    client.infer("fraud", [one, half])
    raise SystemExit("FP16 must be refused")
except InferenceServerException as e:
    assert "INVALID_ARGUMENT" in str(e.status()) and "FP16" in str(e), e
print("ok")
