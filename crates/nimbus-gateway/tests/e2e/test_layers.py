"""Layers with the real AWS CLI and boto3: the layer API (publish, get, list, delete,
permissions), download links for layer content and function code, functions of two
runtimes using layers from /opt in order, sharing with another account, and every way a
function can name a layer it may not use, refused at configuration time."""
import base64
import io
import json
import os
import urllib.error
import urllib.request
import zipfile

import pytest
from botocore.exceptions import ClientError

from conftest import ROLE, aws_cli, client, payload, python_fn, zip_of

OTHER_ACCOUNT = "111111111111"


def code(e):
    return e.value.response["Error"]["Code"]


def status(e):
    return e.value.response["ResponseMetadata"]["HTTPStatusCode"]


@pytest.fixture(scope="module")
def other(dev, endpoint):
    """A second tenant with its own key."""
    dev.create_account(OTHER_ACCOUNT, "OTHERKEY", "other-secret")
    return client(endpoint, key="OTHERKEY", secret="other-secret")


def publish(lam, name, files, **kw):
    return lam.publish_layer_version(LayerName=name, Content={"ZipFile": zip_of(files)}, **kw)


def download(url):
    with urllib.request.urlopen(url, timeout=30) as r:
        return r.status, r.read()


def refused(url):
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(url, timeout=30)
    return e.value.code, json.loads(e.value.read())


def test_layer_versions_with_the_cli(endpoint, tmp_path):
    z = tmp_path / "layer.zip"
    z.write_bytes(zip_of({"python/cli_mod.py": "X = 1\n"}))
    rc, out, err = aws_cli(endpoint, "lambda", "publish-layer-version", "--layer-name", "cli-layer",
                           "--zip-file", f"fileb://{z}", "--compatible-runtimes", "python3.11", "python3.13",
                           "--compatible-architectures", "x86_64", "--license-info", "MIT", "--description", "one")
    assert rc == 0, err
    v1 = json.loads(out)
    assert v1["LayerArn"] == "arn:aws:lambda:us-east-1:000000000000:layer:cli-layer"
    assert v1["LayerVersionArn"] == v1["LayerArn"] + ":1" and v1["Version"] == 1
    assert v1["CompatibleRuntimes"] == ["python3.11", "python3.13"] and v1["LicenseInfo"] == "MIT"
    assert v1["Content"]["CodeSize"] == z.stat().st_size
    assert v1["Content"]["CodeSha256"] == base64.b64encode(__import__("hashlib").sha256(z.read_bytes()).digest()).decode()
    rc, out, err = aws_cli(endpoint, "lambda", "publish-layer-version", "--layer-name", "cli-layer",
                           "--zip-file", f"fileb://{z}", "--compatible-runtimes", "nodejs20.x")
    assert rc == 0, err
    assert json.loads(out)["Version"] == 2
    rc, out, err = aws_cli(endpoint, "lambda", "list-layer-versions", "--layer-name", "cli-layer")
    assert rc == 0, err
    assert [v["Version"] for v in json.loads(out)["LayerVersions"]] == [2, 1], "newest first"
    rc, out, err = aws_cli(endpoint, "lambda", "list-layers", "--compatible-runtime", "python3.13")
    assert rc == 0, err
    mine = [l for l in json.loads(out)["Layers"] if l["LayerName"] == "cli-layer"]
    assert mine[0]["LatestMatchingVersion"]["Version"] == 1, "version 2 is not python3.13"
    rc, out, err = aws_cli(endpoint, "lambda", "get-layer-version-by-arn", "--arn", v1["LayerVersionArn"])
    assert rc == 0, err
    assert json.loads(out)["Description"] == "one"
    # Deleting both versions drops the layer from the list; numbers are never reused.
    for n in ("1", "2"):
        rc, _, err = aws_cli(endpoint, "lambda", "delete-layer-version", "--layer-name", "cli-layer",
                             "--version-number", n)
        assert rc == 0, err
    rc, out, _ = aws_cli(endpoint, "lambda", "list-layers")
    assert "cli-layer" not in [l["LayerName"] for l in json.loads(out)["Layers"]]
    rc, out, err = aws_cli(endpoint, "lambda", "get-layer-version", "--layer-name", "cli-layer", "--version-number", "1")
    assert rc != 0 and "ResourceNotFoundException" in err
    rc, out, err = aws_cli(endpoint, "lambda", "publish-layer-version", "--layer-name", "cli-layer",
                           "--zip-file", f"fileb://{z}")
    assert rc == 0, err
    assert json.loads(out)["Version"] == 3


def test_bad_layer_requests_get_lambdas_errors(lam):
    good = {"python/m.py": "x = 1\n"}
    cases = [
        (dict(LayerName="bad name", Content={"ZipFile": zip_of(good)}), "ValidationException"),
        (dict(LayerName="l", Content={"ZipFile": b"not a zip"}), "InvalidParameterValueException"),
        (dict(LayerName="l", Content={"ZipFile": zip_of({})}), "InvalidParameterValueException"),
        (dict(LayerName="l", Content={"ZipFile": zip_of({"../../etc/x": "evil"})}), "InvalidParameterValueException"),
        (dict(LayerName="l", Content={"ZipFile": zip_of(good)}, CompatibleRuntimes=["cobol1.0"]), "ValidationException"),
        (dict(LayerName="l", Content={"ZipFile": zip_of(good)}, CompatibleArchitectures=["sparc"]), "ValidationException"),
        (dict(LayerName="l", Content={"S3Bucket": "b", "S3Key": "k"}), "InvalidParameterValueException"),
        (dict(LayerName="l"), "ValidationException"),
        (dict(LayerName="arn:aws:lambda:us-east-1:222222222222:layer:theirs", Content={"ZipFile": zip_of(good)}),
         "AccessDeniedException"),
    ]
    for params, expected in cases:
        with pytest.raises(ClientError) as e:
            lam.publish_layer_version(**params)
        assert code(e) == expected, (params, e.value)
    with pytest.raises(ClientError) as e:
        lam.get_layer_version(LayerName="never-published", VersionNumber=1)
    assert code(e) == "ResourceNotFoundException" and status(e) == 404
    with pytest.raises(ClientError) as e:
        lam.get_layer_version_by_arn(Arn="arn:aws:lambda:us-east-1:000000000000:function:f")
    assert code(e) == "ValidationException"
    with pytest.raises(ClientError) as e:
        lam.list_layers(MaxItems=0)
    assert code(e) == "ValidationException"


def test_content_and_code_download_links(lam, other, make_function):
    layer_zip = zip_of({"python/dl.py": "X = 'layer'\n"})
    v = lam.publish_layer_version(LayerName="dl-layer", Content={"ZipFile": layer_zip})
    status_, body = download(v["Content"]["Location"])
    assert status_ == 200 and body == layer_zip
    fn_zip = python_fn("def handler(e, c):\n    return 'dl'\n")
    make_function("dl-fn", Code={"ZipFile": fn_zip})
    got = lam.get_function(FunctionName="dl-fn")
    assert got["Code"]["RepositoryType"] == "S3"
    assert download(got["Code"]["Location"])[1] == fn_zip
    # Tampered links, and one signed by another tenant for content it cannot see.
    url = got["Code"]["Location"]
    sig = url.rsplit("Signature=", 1)[1]
    flipped = url[: -len(sig)] + ("0" if sig[0] != "0" else "1") + sig[1:]
    for bad in [flipped, url.replace("Expires=", "Expires=1"), url.split("?")[0],
                url.replace("AccessKeyId=test", "AccessKeyId=OTHERKEY")]:
        code_, err = refused(bad)
        assert code_ == 403 and "invalid or has expired" in json.dumps(err), (bad, err)
    # The other tenant's own link for our content: its signature is good, its account
    # cannot see the package.
    other.publish_layer_version(LayerName="theirs", Content={"ZipFile": zip_of({"t.txt": "t"})})
    theirs = other.get_layer_version(LayerName="theirs", VersionNumber=1)["Content"]["Location"]
    assert download(theirs)[0] == 200
    ours_sha = got["Code"]["Location"].split("/nimbus/code/")[1].split("?")[0]
    forged = theirs.split("/nimbus/code/")[0] + "/nimbus/code/" + ours_sha + "?" + theirs.split("?")[1]
    assert refused(forged)[0] == 403


LAYER_ONE = {
    "python/shared.py": "WHO = 'one'\n",
    "python/only_one.py": "HERE = True\n",
    "python/lib/python3.11/site-packages/sitepkg.py": "SITE = 'site-packages'\n",
    "nodejs/node_modules/greet/index.js": "module.exports = () => 'one';\n",
    "bin/layer-tool": "#!/bin/sh\necho tool-from-layer\n",
}
LAYER_TWO = {
    "python/shared.py": "WHO = 'two'\n",
    "nodejs/node_modules/greet/index.js": "module.exports = () => 'two';\n",
}


def zip_with_exec(files, executable):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for name, body in files.items():
            info = zipfile.ZipInfo(name)
            info.external_attr = (0o755 if name in executable else 0o644) << 16
            z.writestr(info, body)
    return buf.getvalue()


def test_functions_of_two_runtimes_use_layers_in_order(lam, make_function):
    one = lam.publish_layer_version(LayerName="order-one", Content={"ZipFile": zip_with_exec(LAYER_ONE, {"bin/layer-tool"})},
                                    CompatibleRuntimes=["python3.11", "nodejs20.x"])
    two = publish(lam, "order-two", LAYER_TWO)
    arns = [one["LayerVersionArn"], two["LayerVersionArn"]]
    py = """
import shared, only_one, sitepkg, subprocess
def handler(event, context):
    tool = subprocess.run(["layer-tool"], capture_output=True, text=True).stdout.strip()
    return {"who": shared.WHO, "one": only_one.HERE, "site": sitepkg.SITE, "tool": tool}
"""
    created = make_function("layers-py", code=py, Layers=arns)
    assert [l["Arn"] for l in created["Layers"]] == arns
    assert created["Layers"][0]["CodeSize"] == one["Content"]["CodeSize"]
    out = payload(lam.invoke(FunctionName="layers-py"))
    assert out == {"who": "two", "one": True, "site": "site-packages", "tool": "tool-from-layer"}, out
    node = "exports.handler = async () => ({ who: require('greet')() });\n"
    lam.create_function(FunctionName="layers-node", Runtime="nodejs20.x", Role=ROLE, Handler="index.handler",
                        Code={"ZipFile": zip_of({"index.js": node})}, Layers=list(reversed(arns)))
    try:
        assert payload(lam.invoke(FunctionName="layers-node")) == {"who": "one"}, "the last layer wins"
    finally:
        lam.delete_function(FunctionName="layers-node")
    # A deleted version keeps serving the function configured with it...
    lam.delete_layer_version(LayerName="order-two", VersionNumber=1)
    lam.update_function_configuration(FunctionName="layers-py", Description="still has its layers")
    assert payload(lam.invoke(FunctionName="layers-py"))["who"] == "two"
    # ...and cannot be given to another.
    with pytest.raises(ClientError) as e:
        make_function("layers-late", Layers=[two["LayerVersionArn"]])
    assert code(e) == "InvalidParameterValueException"
    assert str(e.value).endswith(f"Layer version {two['LayerVersionArn']} does not exist.")


def test_layers_a_function_may_not_use_are_refused(lam, make_function):
    v1 = publish(lam, "refuse-me", {"python/a.py": "a = 1\n"})
    v2 = publish(lam, "refuse-me", {"python/a.py": "a = 2\n"})
    base = v1["LayerArn"]
    cases = [
        ([base + ":99"], "InvalidParameterValueException", "does not exist"),
        (["arn:aws:lambda:eu-west-1:000000000000:layer:refuse-me:1"], "InvalidParameterValueException", "does not exist"),
        ([v1["LayerVersionArn"], v2["LayerVersionArn"]], "InvalidParameterValueException", "Two different versions"),
        ([base], "ValidationException", "failed to satisfy"),
        ([v1["LayerVersionArn"]] * 6, "InvalidParameterValueException", "more than 5"),
    ]
    for layers, expected, says in cases:
        with pytest.raises(ClientError) as e:
            make_function("refused-layers", Layers=layers)
        assert code(e) == expected and says in str(e.value), (layers, e.value)
    make_function("gets-layers", Layers=[v2["LayerVersionArn"]])
    with pytest.raises(ClientError) as e:
        lam.update_function_configuration(FunctionName="gets-layers", Layers=[base + ":99"])
    assert code(e) == "InvalidParameterValueException"
    got = lam.get_function_configuration(FunctionName="gets-layers")
    assert [l["Arn"] for l in got["Layers"]] == [v2["LayerVersionArn"]], "a refused update changes nothing"
    cleared = lam.update_function_configuration(FunctionName="gets-layers", Layers=[])
    assert cleared["Layers"] == []


def test_function_and_layers_together_must_fit_250_mb_unzipped(lam, make_function):
    def zeros(mb):
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
            z.writestr("python/zeros.bin", b"\0" * (mb << 20))
        return buf.getvalue()

    a = lam.publish_layer_version(LayerName="big-a", Content={"ZipFile": zeros(130)})
    b = lam.publish_layer_version(LayerName="big-b", Content={"ZipFile": zeros(130)})
    make_function("fits", Layers=[a["LayerVersionArn"]])
    with pytest.raises(ClientError) as e:
        make_function("too-big", Layers=[a["LayerVersionArn"], b["LayerVersionArn"]])
    assert code(e) == "InvalidParameterValueException"
    assert "exceeds the maximum allowed size of 262144000 bytes" in str(e.value)


def test_sharing_a_layer_version_with_another_account(lam, other):
    v = publish(lam, "shared-deps", {"python/shared_dep.py": "FROM = 'account 000000000000'\n"})
    arn, name, n = v["LayerVersionArn"], "shared-deps", v["Version"]
    fn = dict(FunctionName="borrower", Runtime="python3.11", Role=ROLE, Handler="app.handler",
              Code={"ZipFile": python_fn("import shared_dep\ndef handler(e, c):\n    return shared_dep.FROM\n")})
    with pytest.raises(ClientError) as e:
        other.create_function(**fn, Layers=[arn])
    assert code(e) == "AccessDeniedException" and status(e) == 403
    with pytest.raises(ClientError) as e:
        other.get_layer_version_by_arn(Arn=arn)
    assert code(e) == "AccessDeniedException"
    # A version that does not exist looks the same to another account (no probing of
    # layer names or version counts); to the owner it is simply missing.
    for who, expected in [(other, "AccessDeniedException"), (lam, "ResourceNotFoundException")]:
        with pytest.raises(ClientError) as e:
            who.get_layer_version(LayerName=v["LayerArn"], VersionNumber=999)
        assert code(e) == expected
    with pytest.raises(ClientError) as e:
        other.create_function(**dict(fn, FunctionName="prober"), Layers=[v["LayerArn"] + ":999"])
    assert code(e) == "AccessDeniedException"
    # A layer ARN of another region names nothing here.
    with pytest.raises(ClientError) as e:
        lam.get_layer_version(LayerName=v["LayerArn"].replace("us-east-1", "eu-west-1"), VersionNumber=n)
    assert code(e) == "ResourceNotFoundException"
    with pytest.raises(ClientError) as e:
        lam.get_layer_version_policy(LayerName=name, VersionNumber=n)
    assert code(e) == "ResourceNotFoundException"
    # Bad statements.
    for kw, expected in [
        (dict(StatementId="s1", Action="lambda:InvokeFunction", Principal=OTHER_ACCOUNT), "ValidationException"),
        (dict(StatementId="s1", Action="lambda:GetLayerVersion", Principal="someone"), "ValidationException"),
        (dict(StatementId="bad id!", Action="lambda:GetLayerVersion", Principal=OTHER_ACCOUNT), "ValidationException"),
        (dict(StatementId="s1", Action="lambda:GetLayerVersion", Principal=OTHER_ACCOUNT, OrganizationId="o-abcdefghij"),
         "InvalidParameterValueException"),
    ]:
        with pytest.raises(ClientError) as e:
            lam.add_layer_version_permission(LayerName=name, VersionNumber=n, **kw)
        assert code(e) == expected, (kw, e.value)
    # The other account cannot grant itself access.
    with pytest.raises(ClientError) as e:
        other.add_layer_version_permission(LayerName=v["LayerArn"], VersionNumber=n, StatementId="me",
                                           Action="lambda:GetLayerVersion", Principal=OTHER_ACCOUNT)
    assert code(e) == "AccessDeniedException"
    added = lam.add_layer_version_permission(LayerName=name, VersionNumber=n, StatementId="share",
                                             Action="lambda:GetLayerVersion", Principal=OTHER_ACCOUNT)
    assert json.loads(added["Statement"])["Principal"] == {"AWS": f"arn:aws:iam::{OTHER_ACCOUNT}:root"}
    with pytest.raises(ClientError) as e:
        lam.add_layer_version_permission(LayerName=name, VersionNumber=n, StatementId="share",
                                         Action="lambda:GetLayerVersion", Principal="*")
    assert code(e) == "ResourceConflictException"
    with pytest.raises(ClientError) as e:
        lam.add_layer_version_permission(LayerName=name, VersionNumber=n, StatementId="late",
                                         Action="lambda:GetLayerVersion", Principal="*", RevisionId="stale")
    assert code(e) == "PreconditionFailedException"
    policy = lam.get_layer_version_policy(LayerName=name, VersionNumber=n)
    assert [s["Sid"] for s in json.loads(policy["Policy"])["Statement"]] == ["share"]
    assert policy["RevisionId"] == added["RevisionId"]
    # Now shared: the other account reads it and runs a function with it.
    assert other.get_layer_version_by_arn(Arn=arn)["Version"] == n
    other.create_function(**fn, Layers=[arn])
    try:
        assert payload(other.invoke(FunctionName="borrower")) == "account 000000000000"
        # Taking the permission back stops new uses, not the function already using it.
        lam.remove_layer_version_permission(LayerName=name, VersionNumber=n, StatementId="share")
        with pytest.raises(ClientError) as e:
            lam.remove_layer_version_permission(LayerName=name, VersionNumber=n, StatementId="share")
        assert code(e) == "ResourceNotFoundException"
        with pytest.raises(ClientError) as e:
            other.create_function(**dict(fn, FunctionName="borrower-2"), Layers=[arn])
        assert code(e) == "AccessDeniedException"
        assert payload(other.invoke(FunctionName="borrower")) == "account 000000000000"
    finally:
        other.delete_function(FunctionName="borrower")
    # The other account's own layers are not listed to us.
    assert "shared-deps" not in [l["LayerName"] for l in other.list_layers()["Layers"]]
