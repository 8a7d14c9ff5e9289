"""Example client of a tfvssl encoder served by TF Serving: REST and gRPC predict requests.

    # REST (port 8501): serialized tfvssl records, one video each (serving_examples)
    python export/client.py --rest=localhost:8501 --model=dpc \
        --examples=data/ucf101/test/test-00000.tfrecord --limit=4
    # gRPC (port 8500): uint8 frames from a .npy of shape [B, T, H, W, 3] (serving_frames)
    python export/client.py --grpc=localhost:8500 --model=dpc --frames=clips.npy
    # Print the request instead of sending it
    python export/client.py --model=dpc --examples=... --dry_run

The signature follows from the input: `--examples` -> `serving_examples` (strings, base64
over REST), `--frames` -> `serving_frames` (uint8), `--clips` -> `serving_default`
(float32, already normalised). Prints each output's shape and the first values. Needs
numpy and tensorflow (TFRecords, tensor protos); gRPC also needs `tensorflow-serving-api`
(`pip install tfvssl[serving]`). The contract is export/README.md.
"""

import argparse
import base64
import json
import sys
import urllib.request

import numpy as np

# Input flag -> (signature, input name).
SIGNATURES = {
    "examples": ("serving_examples", "examples"),
    "frames": ("serving_frames", "frames"),
    "clips": ("serving_default", "clips"),
}


def read_examples(path, limit=None):
    """The serialized records of a TFRecord file (at most `limit`), a list of bytes."""
    import tensorflow as tf

    dataset = tf.data.TFRecordDataset(path)
    if limit:
        dataset = dataset.take(limit)
    return [record.numpy() for record in dataset]


def rest_body(signature, values):
    """The JSON body of a REST predict request in the row ("instances") format.

    Args:
      signature: the signature name.
      values: a list of bytes (serialized records) or an array `[B, T, H, W, C]`.

    Returns:
      A dict: `{"signature_name": ..., "instances": [...]}`: the signatures have one input,
      so each instance is one row of it; strings travel as `{"b64": ...}` objects, as TF
      Serving's REST API requires for binary data.
    """
    if isinstance(values, (list, tuple)):
        instances = [{"b64": base64.b64encode(value).decode("ascii")} for value in values]
    else:
        instances = np.asarray(values).tolist()
    return {"signature_name": signature, "instances": instances}


def post_rest(host, model, body, version=None):
    """POSTs `body` to `http://<host>/v1/models/<model>[/versions/<v>]:predict`.

    Returns:
      Dict output name -> array `[B, ...]`.
    """
    path = f"/v1/models/{model}" + (f"/versions/{version}" if version else "") + ":predict"
    request = urllib.request.Request(
        f"http://{host}{path}", data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request) as response:
        predictions = json.load(response)["predictions"]
    # With several outputs each row is an object of them; with one, the row is its value.
    if isinstance(predictions[0], dict):
        return {name: np.array([row[name] for row in predictions]) for name in predictions[0]}
    return {"output": np.array(predictions)}


def grpc_request(model, signature, input_name, values, version=None):
    """A `tensorflow_serving.apis.predict_pb2.PredictRequest` for the signature."""
    import tensorflow as tf
    from tensorflow_serving.apis import predict_pb2

    request = predict_pb2.PredictRequest()
    request.model_spec.name = model
    request.model_spec.signature_name = signature
    if version:
        request.model_spec.version.value = int(version)
    if isinstance(values, (list, tuple)):
        tensor = tf.make_tensor_proto(values, dtype=tf.string)
    else:
        tensor = tf.make_tensor_proto(np.asarray(values))
    request.inputs[input_name].CopyFrom(tensor)
    return request


def send_grpc(target, request, timeout=60.0):
    """Sends a PredictRequest to `target` (host:port); returns output name -> array."""
    import grpc
    import tensorflow as tf
    from tensorflow_serving.apis import prediction_service_pb2_grpc

    with grpc.insecure_channel(target) as channel:
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        response = stub.Predict(request, timeout=timeout)
    return {name: tf.make_ndarray(tensor) for name, tensor in response.outputs.items()}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True, help="Model name (TF Serving's --model_name).")
    parser.add_argument("--version", type=int, help="Model version (default: the newest served).")
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--rest", help="host:port of the REST API (e.g. localhost:8501).")
    where.add_argument("--grpc", help="host:port of the gRPC API (e.g. localhost:8500).")
    what = parser.add_mutually_exclusive_group(required=True)
    what.add_argument("--examples", help="TFRecord file of tfvssl records (serving_examples).")
    what.add_argument("--frames", help=".npy of uint8 frames [B, T, H, W, 3] (serving_frames).")
    what.add_argument("--clips", help=".npy of float32 normalised clips [B, T, H, W, 3] (serving_default).")
    parser.add_argument("--limit", type=int, default=8, help="Records read from --examples.")
    parser.add_argument("--dry_run", action="store_true", help="Print the request, do not send it.")
    args = parser.parse_args(argv)

    kind = next(name for name in SIGNATURES if getattr(args, name))
    signature, input_name = SIGNATURES[kind]
    if kind == "examples":
        values = read_examples(args.examples, args.limit)
    else:
        values = np.load(getattr(args, kind)).astype(np.uint8 if kind == "frames" else np.float32)

    if args.grpc:
        request = grpc_request(args.model, signature, input_name, values, args.version)
        if args.dry_run:
            print(str(request)[:2000])
            return 0
        outputs = send_grpc(args.grpc, request)
    else:
        body = rest_body(signature, values)
        if args.dry_run:
            print(json.dumps(body)[:2000])
            return 0
        if not args.rest:
            parser.error("give --rest or --grpc (or --dry_run)")
        outputs = post_rest(args.rest, args.model, body, args.version)
    for name, value in sorted(outputs.items()):
        print(f"{name}: shape {value.shape}, first values {np.round(value.ravel()[:5], 4).tolist()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
