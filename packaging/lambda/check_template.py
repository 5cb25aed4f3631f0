"""Checks the promises of the Lambda's template that cfn-lint does not check.

cfn-lint validates the template against the CloudFormation and SAM schemas. This script
asserts what the function relies on. The event source mapping must have partial batch
responses, bisecting, a retry limit and an on-failure destination. The function must run
on provided.al2023 with the webhook secret in its environment. Every statement of the
execution role must name resources of this stack instead of "*".

Run it with the Python of the cfn-lint venv: python check_template.py template.yaml
"""

import sys

from cfnlint.decode import decode


def fail(message):
    print(f"check_template: {message}", file=sys.stderr)
    sys.exit(1)


def main(path):
    template, matches = decode(path)
    if matches:
        fail(f"{path} does not parse: {matches}")
    resources = template["Resources"]
    function = resources["Function"]["Properties"]
    if function.get("Runtime") != "provided.al2023":
        fail("the function must use the provided.al2023 runtime")
    if function.get("Handler") != "bootstrap":
        fail("the function's handler must be bootstrap")
    if "Role" not in function:
        fail("the function must use FunctionRole, so SAM adds no broad managed policy")
    if "EDGEALERT_SLACK_SECRET_ARN" not in function["Environment"]["Variables"]:
        fail("the function must get EDGEALERT_SLACK_SECRET_ARN")

    mapping = function["Events"]["Records"]["Properties"]
    expected = {
        "FunctionResponseTypes": ["ReportBatchItemFailures"],
        "BisectBatchOnFunctionError": True,
    }
    for key, value in expected.items():
        if mapping.get(key) != value:
            fail(f"event source mapping {key} must be {value!r}, found {mapping.get(key)!r}")
    if "MaximumRetryAttempts" not in mapping:
        fail("event source mapping needs a retry limit (MaximumRetryAttempts)")
    if "Destination" not in mapping.get("DestinationConfig", {}).get("OnFailure", {}):
        fail("event source mapping needs an on-failure destination")

    statements = resources["FunctionRole"]["Properties"]["Policies"][0]["PolicyDocument"][
        "Statement"
    ]
    for statement in statements:
        resource = statement["Resource"]
        if resource == "*" or (isinstance(resource, list) and "*" in resource):
            fail(f"statement {statement.get('Sid')} grants {statement['Action']} on every resource")
        actions = statement["Action"]
        actions = actions if isinstance(actions, list) else [actions]
        for action in actions:
            if action.endswith("*"):
                fail(f"statement {statement.get('Sid')} grants the wildcard action {action}")
    if resources["SlackWebhookSecret"]["Type"] != "AWS::SecretsManager::Secret":
        fail("the webhook secret must be a Secrets Manager secret")
    print(f"check_template: {path} keeps every promise")


if __name__ == "__main__":
    main(sys.argv[1])
