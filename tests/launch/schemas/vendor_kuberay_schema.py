"""Regenerate ``rayjob-ray-v1.json`` from KubeRay's RayJob CRD (a spec, vendored for offline tests).

    git -C kuberay show v1.7.0:ray-operator/config/crd/bases/ray.io_rayjobs.yaml > ray.io_rayjobs.yaml
    python tests/launch/schemas/vendor_kuberay_schema.py ray.io_rayjobs.yaml v1.7.0 > tests/launch/schemas/rayjob-ray-v1.json

Keeps the ``v1`` ``openAPIV3Schema`` exactly as KubeRay generates it, with two reductions:
- every embedded core/v1 ``PodTemplateSpec`` (head, worker groups, submitter pod) becomes a stub;
  the tests validate those templates against the Kubernetes PodTemplateSpec schema instead
  (the CRD copies that schema verbatim, ~68 kB each);
- ``status`` is dropped (the cluster writes it, manifests never do).
"""

import json
import sys

import yaml

POD_TEMPLATE_KEYS = {"template", "submitterPodTemplate"}


def stub(description: str) -> dict:
    return {
        "type": "object",
        "x-kubernetes-preserve-unknown-fields": True,
        "x-care-verl-stub": "core/v1 PodTemplateSpec: validated against the Kubernetes schema separately",
        "description": description,
    }


def reduce(node):
    if isinstance(node, dict):
        out = {}
        for key, value in node.items():
            if key == "properties" and isinstance(value, dict):
                props = {}
                for name, sub in value.items():
                    is_pod_template = (
                        name in POD_TEMPLATE_KEYS
                        and isinstance(sub, dict)
                        and {"metadata", "spec"} <= set(sub.get("properties", {}))
                    )
                    props[name] = stub(sub.get("description", "")) if is_pod_template else reduce(sub)
                out[key] = props
            else:
                out[key] = reduce(value)
        return out
    if isinstance(node, list):
        return [reduce(v) for v in node]
    return node


def main(path: str, tag: str) -> None:
    crd = yaml.safe_load(open(path))
    version = next(v for v in crd["spec"]["versions"] if v["name"] == "v1")
    schema = reduce(version["schema"]["openAPIV3Schema"])
    schema["properties"].pop("status", None)
    schema = {
        "$comment": f"KubeRay {tag} ray-operator/config/crd/bases/ray.io_rayjobs.yaml, version v1 openAPIV3Schema; "
        "pod templates stubbed and status dropped by tests/launch/schemas/vendor_kuberay_schema.py",
        **schema,
    }
    json.dump(schema, sys.stdout, indent=1, sort_keys=True)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
