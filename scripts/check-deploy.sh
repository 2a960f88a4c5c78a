#!/usr/bin/env bash
# Static checks of the Kubernetes manifests in deploy/kubernetes/ (no cluster runs here): every
# document parses and names its kind; the CloudNativePG clusters preload pg_mask and set exactly
# one key source; a key file comes from a projected Secret with a mode pg_mask accepts, under the
# path the setting names; every ConfigMap key a cluster applies is a file of sql/; the feeder
# verifies the server's certificate and host name, carries no AWS key, and has its probes; every
# Secret referred to is one CloudNativePG makes or one secrets.example.yaml describes.
source "$(dirname "$0")/lib.sh"
VENV="$RUN_DIR/lint-venv"
[ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
"$VENV/bin/python" -c 'import yaml' 2>/dev/null || "$VENV/bin/pip" install --quiet pyyaml
"$VENV/bin/python" - "$ROOT" <<'PY'
import glob, os, sys, yaml
root = sys.argv[1]
fail = []
def check(cond, msg):
    if not cond:
        fail.append(msg)
docs = {}
for path in sorted(glob.glob(os.path.join(root, "deploy/kubernetes/*.yaml"))):
    name = os.path.basename(path)
    for doc in yaml.safe_load_all(open(path)):
        if doc is None:
            continue
        for key in ("apiVersion", "kind", "metadata"):
            check(key in doc, f"{name}: a document has no {key}")
        docs.setdefault(name, []).append(doc)
secrets = {d["metadata"]["name"] for d in docs.get("secrets.example.yaml", []) if d.get("kind") == "Secret"}
clusters = [(n, d) for n, ds in docs.items() for d in ds if d.get("kind") == "Cluster"]
check(len(clusters) >= 2, "expected the two CloudNativePG Cluster examples")
sql_files = {os.path.basename(p) for p in glob.glob(os.path.join(root, "sql/*.sql"))}
made_by_cnpg = set()
for name, c in clusters:
    check(c["apiVersion"] == "postgresql.cnpg.io/v1", f"{name}: apiVersion")
    made_by_cnpg.add(c["metadata"]["name"] + "-ca")
    pg = c["spec"]["postgresql"]
    check("pg_mask" in pg.get("shared_preload_libraries", []), f"{name}: pg_mask is not preloaded")
    params = pg.get("parameters", {})
    sources = [k for k in ("pg_mask.keys", "pg_mask.key_file", "pg_mask.key_command") if k in params]
    check(len(sources) == 1, f"{name}: exactly one key source, found {sources}")
    check("pg_mask.keys" not in params, f"{name}: never the key itself in the manifest")
    if "pg_mask.key_file" in params:
        path = params["pg_mask.key_file"]
        check(path.startswith("/projected/"), f"{name}: the key file must be projected")
        items = [(s["secret"]["name"], i) for s in c["spec"].get("projectedVolumeTemplate", {}).get("sources", [])
                 if "secret" in s for i in s["secret"].get("items", [])]
        found = [(sec, i) for sec, i in items if "/projected/" + i["path"] == path]
        check(len(found) == 1, f"{name}: no projected Secret item at {path}")
        for sec, i in found:
            check(sec in secrets, f"{name}: Secret {sec} is not in secrets.example.yaml")
            mode = i.get("mode", 0o644)
            # Projected files belong to root: group-readable at most (pg_mask's rule for a
            # root-owned key file).
            check(mode & 0o037 == 0, f"{name}: key file mode {oct(mode)} is too open")
    for role in c["spec"].get("managed", {}).get("roles", []):
        sec = role.get("passwordSecret", {}).get("name")
        check(sec is None or sec in secrets, f"{name}: role {role['name']}'s Secret {sec} is not described")
    refs = c["spec"]["bootstrap"]["initdb"].get("postInitApplicationSQLRefs", {}).get("configMapRefs", [])
    for ref in refs:
        check(ref["key"] in sql_files, f"{name}: ConfigMap key {ref['key']} is not a file of sql/")
    check({r["key"] for r in refs} == sql_files, f"{name}: apply every file of sql/ ({sorted(sql_files)})")
deployments = [(n, d) for n, ds in docs.items() for d in ds if d.get("kind") == "Deployment"]
check(len(deployments) == 1, "expected the feeder Deployment")
for name, d in deployments:
    spec = d["spec"]["template"]["spec"]
    check(spec.get("terminationGracePeriodSeconds", 30) >= 5, f"{name}: grace period too short")
    for c in spec["containers"]:
        env = {e["name"]: e for e in c.get("env", [])}
        check(env.get("PGSSLMODE", {}).get("value") == "verify-full", f"{name}: PGSSLMODE must be verify-full")
        check("PGSSLROOTCERT" in env, f"{name}: PGSSLROOTCERT")
        check(not any(k.startswith("AWS_ACCESS_KEY") or k == "AWS_SECRET_ACCESS_KEY" for k in env),
              f"{name}: AWS keys in the manifest (use the pod's role)")
        for e in env.values():
            ref = e.get("valueFrom", {}).get("secretKeyRef")
            if ref:
                check(ref["name"] in secrets | made_by_cnpg, f"{name}: Secret {ref['name']} is not described")
        check(c.get("readinessProbe", {}).get("httpGet", {}).get("path") == "/healthz", f"{name}: readiness probe")
    for v in spec.get("volumes", []):
        if "secret" in v:
            check(v["secret"]["secretName"] in secrets | made_by_cnpg, f"{name}: Secret {v['secret']['secretName']}")
if fail:
    print("\n".join("deploy/kubernetes: " + f for f in fail))
    sys.exit(1)
print(f"deploy/kubernetes: {sum(len(v) for v in docs.values())} documents pass the static checks")
PY
