#!/usr/bin/env python3
"""What a schema cannot say about deploy/k8s, checked on its rendered manifests.

Reads the output of `kubectl kustomize deploy/k8s` (a file argument, or stdin) and checks that
  * every region of config/*.toml has a gateway Deployment, a Service and a PodDisruptionBudget
    whose selector matches the Deployment's pods, and the Deployment mounts that region's config;
  * each gateway container probes /healthz (liveness) and /readyz (readiness) on the admin port
    the config binds, has resource requests, runs as non-root without privilege escalation;
  * terminationGracePeriodSeconds covers the config's drain_delay_ms + shutdown_grace_secs;
  * the environment variables the config reads (url_env, api_keys env) are set in the pod.
Exits 0 when all hold; prints each failure otherwise. Needs PyYAML.
"""

import sys
import tomllib
from pathlib import Path

import yaml

CONFIG_DIR = Path(__file__).resolve().parent.parent / "deploy" / "k8s" / "config"


def env_vars_read(cfg):
    names = {cfg.get("state", {}).get("url_env")}
    for tenant in cfg.get("tenants", []):
        names |= {k.get("env") for k in tenant.get("api_keys", [])}
    return {n for n in names if n}


def check_gateway(docs, region, cfg, errors):
    def err(msg):
        errors.append(f"{region}: {msg}")

    deps = [d for d in docs if d["kind"] == "Deployment"
            and d["metadata"].get("labels", {}).get("spillway.dev/region") == region
            and d["metadata"]["labels"].get("app.kubernetes.io/component") == "gateway"]
    if len(deps) != 1:
        return err(f"expected one gateway Deployment, found {len(deps)}")
    dep = deps[0]
    pod = dep["spec"]["template"]
    labels = pod["metadata"]["labels"]

    def selects(sel):
        return sel and all(labels.get(k) == v for k, v in sel.items())

    if not any(d["kind"] == "Service" and selects(d["spec"].get("selector")) for d in docs):
        err("no Service selects the gateway's pods")
    if not any(d["kind"] == "PodDisruptionBudget"
               and selects(d["spec"]["selector"].get("matchLabels")) for d in docs):
        err("no PodDisruptionBudget selects the gateway's pods")

    spec = pod["spec"]
    server = cfg.get("server", {})
    drain_s = server.get("drain_delay_ms", 5000) / 1000 + server.get("shutdown_grace_secs", 30)
    if spec.get("terminationGracePeriodSeconds", 30) < drain_s:
        err(f"terminationGracePeriodSeconds below the drain ({drain_s:.0f} s)")
    if not spec.get("securityContext", {}).get("runAsNonRoot"):
        err("pod securityContext lacks runAsNonRoot")
    items = [i for v in spec.get("volumes", []) for i in v.get("configMap", {}).get("items", [])]
    if not any(i["key"] == f"{region}.toml" for i in items):
        err(f"the pod does not mount {region}.toml")

    (container,) = spec["containers"]
    admin_port = int(cfg["admin"]["bind"].rsplit(":", 1)[1])
    if not cfg["admin"]["bind"].startswith("0.0.0.0:"):
        err(f"[admin] bind {cfg['admin']['bind']!r} is not reachable by the kubelet's probes")
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    for probe, path in (("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")):
        get = container.get(probe, {}).get("httpGet", {})
        port = ports.get(get.get("port"), get.get("port"))
        if get.get("path") != path or port != admin_port:
            err(f"{probe} is not GET {path} on the admin port {admin_port}")
    if not container.get("resources", {}).get("requests"):
        err("no resource requests")
    csc = container.get("securityContext", {})
    if csc.get("allowPrivilegeEscalation") is not False:
        err("allowPrivilegeEscalation is not false")
    missing = env_vars_read(cfg) - {e["name"] for e in container.get("env", [])}
    if missing:
        err(f"the config reads {sorted(missing)} but the pod does not set them")


def main():
    text = Path(sys.argv[1]).read_text() if len(sys.argv) > 1 else sys.stdin.read()
    docs = [d for d in yaml.safe_load_all(text) if d]
    errors = []
    regions = []
    for path in sorted(CONFIG_DIR.glob("*.toml")):
        cfg = tomllib.loads(path.read_text())
        (listener,) = cfg["listeners"]
        region = listener["region"]
        if path.stem != region:
            errors.append(f"{path.name}: its listener is {region}")
        regions.append(region)
        check_gateway(docs, region, cfg, errors)
    if len(regions) < 2:
        errors.append(f"expected a config per region in {CONFIG_DIR}, found {regions}")
    for e in errors:
        print(f"k8s_check: FAIL: {e}", file=sys.stderr)
    if errors:
        sys.exit(1)
    print(f"k8s_check: {len(regions)} regional gateways ({', '.join(regions)}): Deployment, "
          "Service, PDB, probes on the admin port, requests, non-root, grace >= drain, env: ok")


if __name__ == "__main__":
    main()
