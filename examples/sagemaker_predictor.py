"""The SageMaker Python SDK's Predictor calling an infergate route.

Code written for a SageMaker endpoint keeps working when only the runtime
client's endpoint URL moves to the gateway: the route's name plays the
endpoint's. Run by tests/interop/check.py against a gateway it starts; by
hand:

    pip install 'sagemaker>=2,<3'
    AWS_ACCESS_KEY_ID=AKIA... AWS_SECRET_ACCESS_KEY=... \
        python examples/sagemaker_predictor.py http://127.0.0.1:8080 flan "one stable inference URL"

The keys are a client's `aws_access_key_id` and its secret (any pair will do
with `server.auth = "none"`). Nothing here talks to AWS: the Session is given
its region and both of its SageMaker clients, so the SDK neither looks for a
region or a default bucket nor calls the SageMaker control plane (its
`sagemaker_client` points at a local port where nothing listens, and is
never used by `predict`).
"""

import json
import os
import sys

os.environ.setdefault("SAGEMAKER_SUPPRESS_V2_WARNING", "1")

import boto3  # noqa: E402
import sagemaker  # noqa: E402
from sagemaker.deserializers import JSONDeserializer  # noqa: E402
from sagemaker.predictor import Predictor  # noqa: E402
from sagemaker.serializers import JSONSerializer  # noqa: E402

REGION = "us-east-1"


def predictor(url, route):
    boto_session = boto3.Session(region_name=REGION)
    session = sagemaker.Session(
        boto_session=boto_session,
        sagemaker_client=boto_session.client("sagemaker", endpoint_url="http://127.0.0.1:9"),
        sagemaker_runtime_client=boto3.client("sagemaker-runtime", endpoint_url=url, region_name=REGION),
        # No SDK defaults read from ~/.config/sagemaker or an S3 URL.
        sagemaker_config={"SchemaVersion": "1.0"},
    )
    return Predictor(endpoint_name=route, sagemaker_session=session,
                     serializer=JSONSerializer(), deserializer=JSONDeserializer())


def main():
    if len(sys.argv) < 3:
        sys.exit(f"usage: {sys.argv[0]} GATEWAY_URL ROUTE [PROMPT]")
    url, route = sys.argv[1], sys.argv[2]
    prompt = sys.argv[3] if len(sys.argv) > 3 else "one stable inference URL"
    result = predictor(url, route).predict({"inputs": prompt, "parameters": {"max_new_tokens": 8}})
    print(json.dumps(result))


if __name__ == "__main__":
    main()
