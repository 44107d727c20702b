"""Static checks of deploy/: the Kubernetes manifests are well-formed and agree with the
Compose file (same roles, flags, ports, zones, member count); the systemd units verify.
kubeconform is not packaged for Debian, so this is the validation that runs here."""
import pathlib
import re
import shutil
import subprocess

import pytest
import yaml

DEPLOY = pathlib.Path(__file__).resolve().parent.parent
K8S = DEPLOY / "k8s"
PORTS = {17001, 9000, 18001, 9100}
WORKLOADS = {"Deployment", "StatefulSet", "DaemonSet", "Job"}


def k8s_docs():
    kust = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    docs = []
    for res in kust["resources"]:
        docs += [d for d in yaml.safe_load_all((K8S / res).read_text()) if d]
    return docs


def compose():
    return yaml.safe_load((DEPLOY / "compose" / "docker-compose.yml").read_text())


def role_of(args):
    """(role, set of --flags) of a nimbus command line."""
    words = [a for a in args if a not in ("/usr/bin/tini", "--", "/bin/sh", "-c", "nimbus")]
    if len(words) == 1:  # a shell line
        words = words[0].replace("exec nimbus", "").split()
    role = words[0] if words[0] != "account" else "account create"
    return role, {w for w in words if w.startswith("--")}


def k8s_roles():
    roles = {}
    for d in k8s_docs():
        if d["kind"] in WORKLOADS:
            c = d["spec"]["template"]["spec"]["containers"][0]
            role, flags = role_of(c.get("command", []) + c.get("args", []))
            roles.setdefault(role, set()).update(flags)
    return roles


def compose_roles():
    roles = {}
    for name, s in compose()["services"].items():
        if "command" in s and s.get("image", "").startswith("${NIMBUS_IMAGE"):
            role, flags = role_of(s["command"])
            roles.setdefault(role, set()).update(flags)
    return roles


def test_every_resource_is_well_formed():
    docs = k8s_docs()
    assert {d["kind"] for d in docs} >= {"Namespace", "Service", "StatefulSet", "DaemonSet", "Deployment", "Job"}
    for d in docs:
        assert d.get("apiVersion") and d.get("kind") and d["metadata"].get("name"), d
        if d["kind"] != "Namespace":
            assert d["metadata"].get("namespace") == "nimbus", d["metadata"]
        if d["kind"] in WORKLOADS - {"Job"}:
            sel = d["spec"]["selector"]["matchLabels"]
            labels = d["spec"]["template"]["metadata"]["labels"]
            assert sel.items() <= labels.items(), f"{d['metadata']['name']}: selector does not match the pod"
        if d["kind"] in WORKLOADS:
            for c in d["spec"]["template"]["spec"]["containers"]:
                assert c["image"] == "nimbus:dev"
                for p in c.get("ports", []):
                    assert p["containerPort"] in PORTS
        if d["kind"] == "Service":
            selected = [
                w for w in docs if w["kind"] in WORKLOADS
                and d["spec"]["selector"].items() <= w["spec"]["template"]["metadata"]["labels"].items()
            ]
            assert selected, f"service {d['metadata']['name']} selects nothing"


def test_metadata_statefulset_matches_compose():
    sts = next(d for d in k8s_docs() if d["kind"] == "StatefulSet")
    metas = [n for n in compose()["services"] if n.startswith("meta")]
    assert sts["spec"]["replicas"] == len(metas) == 3
    assert sts["spec"]["volumeClaimTemplates"][0]["spec"]["accessModes"] == ["ReadWriteOnce"]
    line = sts["spec"]["template"]["spec"]["containers"][0]["command"][-1]
    members = re.search(r"--initial-cluster (\S+)", line).group(1)
    ids = [int(m.split("=")[0]) for m in members.split(",")]
    assert ids == [1, 2, 3]
    # Kubernetes expands $(VAR) in commands; the shell arithmetic must be escaped.
    assert "$$((" in line
    svc = next(d for d in k8s_docs() if d["kind"] == "Service" and d["metadata"]["name"] == sts["spec"]["serviceName"])
    assert svc["spec"]["clusterIP"] == "None" and svc["spec"]["publishNotReadyAddresses"]


def test_roles_and_flags_agree_with_compose():
    k, c = k8s_roles(), compose_roles()
    assert set(k) == set(c) == {"meta", "gateway", "worker", "account create"}
    for role in k:
        assert k[role] == c[role], f"{role}: k8s {sorted(k[role])} vs compose {sorted(c[role])}"


def test_worker_zones_and_privileges_agree_with_compose():
    zones_k8s = set()
    for d in k8s_docs():
        if d["kind"] == "DaemonSet":
            spec = d["spec"]["template"]["spec"]
            assert spec["containers"][0]["securityContext"]["privileged"] is True
            args = spec["containers"][0]["args"]
            zone = args[args.index("--zone") + 1]
            assert spec["nodeSelector"]["topology.kubernetes.io/zone"] == zone
            zones_k8s.add(zone)
    zones_compose = set()
    for name, s in compose()["services"].items():
        if name.startswith("worker"):
            cmd = s["command"]
            zones_compose.add(cmd[cmd.index("--zone") + 1])
    assert zones_k8s == zones_compose == {"us-east-1a", "us-east-1b"}
    assert compose()["x-worker"]["privileged"] is True


def test_compose_has_the_promised_shape():
    services = compose()["services"]
    assert sum(n.startswith("meta") for n in services) == 3
    assert sum(n.startswith("gateway") for n in services) == 2
    assert sum(n.startswith("worker") for n in services) == 3
    assert "bootstrap" in services and "prometheus" in services
    for n in ("meta1", "meta2", "meta3"):
        assert any(v.endswith(":/var/lib/nimbus") for v in services[n]["volumes"])


@pytest.mark.parametrize("unit", sorted((DEPLOY / "systemd").glob("*.service")), ids=lambda p: p.name)
def test_systemd_units_verify(unit):
    text = unit.read_text()
    role = unit.stem.split("-")[1]
    assert f"/usr/local/bin/nimbus {role} " in text
    if not shutil.which("systemd-analyze"):
        pytest.skip("systemd-analyze not installed")
    out = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True, text=True)
    # The binary is not installed on the machine that runs the tests; anything else counts.
    problems = [l for l in out.stderr.splitlines() if l.strip() and "is not executable" not in l]
    assert not problems, problems
