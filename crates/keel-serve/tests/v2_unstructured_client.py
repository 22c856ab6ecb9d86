"""NVIDIA's `tritonclient` (HTTP and gRPC) against keel serving a text and an image model.

Run by `tests/it/lifecycle.rs` as
`python v2_unstructured_client.py HTTP_ADDR GRPC_ADDR SPEC_JSON`, SPEC_JSON holding the texts,
the images (flat, NCHW), their shape and keel's in-process scores for both. Sends texts as
BYTES and images as FP32 (binary and JSON over HTTP, raw over gRPC, and channels-last with
the request parameter `layout = NHWC`); checks every class of every row; prints `ok`.
"""
import json
import sys

import numpy as np
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient

http_addr, grpc_addr, spec = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
texts = np.array([t.encode() for t in spec["texts"]], dtype=np.object_)
want_text = np.array(spec["want_text"], dtype=np.float64).reshape(len(texts), -1)
shape = spec["shape"]
images = np.array(spec["images"], dtype=np.float32).reshape([len(spec["want_image"]) // spec["classes"]] + shape)
want_image = np.array(spec["want_image"], dtype=np.float64).reshape(images.shape[0], -1)


def check(got, want, what):
    got = np.asarray(got, dtype=np.float64).reshape(want.shape)
    assert np.array_equal(got, want), (what, got, want)


for module, addr in ((httpclient, http_addr), (grpcclient, grpc_addr)):
    client = module.InferenceServerClient(url=addr)
    assert client.is_model_ready(spec["text_model"])
    for binary in (True, False) if module is httpclient else (True,):
        kw = {"binary_data": binary} if module is httpclient else {}
        t = module.InferInput(spec["text_input"], [len(texts)], "BYTES")
        t.set_data_from_numpy(texts, **kw)
        res = client.infer(spec["text_model"], [t])
        check(res.as_numpy("predict"), want_text, f"{module.__name__} texts binary={binary}")

        i = module.InferInput(spec["image_input"], list(images.shape), "FP32")
        i.set_data_from_numpy(images, **kw)
        res = client.infer(spec["image_model"], [i])
        check(res.as_numpy("predict"), want_image, f"{module.__name__} images binary={binary}")

    # Channels-last, declared by the request's `layout` parameter.
    nhwc = np.ascontiguousarray(images.transpose(0, 2, 3, 1))
    i = module.InferInput(spec["image_input"], list(nhwc.shape), "FP32")
    i.set_data_from_numpy(nhwc)
    res = client.infer(spec["image_model"], [i], parameters={"layout": "NHWC"})
    check(res.as_numpy("predict"), want_image, f"{module.__name__} NHWC")
    print(module.__name__, "ok")
print("ok")
