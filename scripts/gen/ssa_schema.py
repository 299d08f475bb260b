#!/usr/bin/env python3
"""Generates crates/skiff-apiserver/src/apply/schema_table.rs from upstream's Go API types.

Usage: scripts/gen/ssa_schema.py <kubernetes/api checkout> > crates/skiff-apiserver/src/apply/schema_table.rs
       cargo fmt --all

Server-side apply tracks field ownership with upstream's structured-merge-diff schema, which
kube-apiserver builds from the OpenAPI extensions the Go types' markers produce:
`// +listType=atomic|set|map` with `// +listMapKey=k` (x-kubernetes-list-type/-map-keys),
`// +mapType=atomic|granular` and `// +structType=atomic|granular` (x-kubernetes-map-type), and,
for lists without a listType, the `patchStrategy:"merge"` / `patchMergeKey` struct tags
(x-kubernetes-patch-strategy: a merge list with a key is a map list, one without a key a set).
Lists with neither are atomic, as upstream. k8s-openapi does not carry these extensions, so this
script reads the markers from a kubernetes/api checkout (the same one scripts/gen/wire_fields.py
reads). Types of k8s.io/apimachinery (ObjectMeta, LabelSelector, ...) are written out below
with their upstream markers; other foreign types (Time, Quantity, IntOrString) are scalars.
"""
import re
import subprocess
import sys
import os

sys.path.insert(0, os.path.dirname(__file__))
from wire_fields import PACKAGES, ROOTS, INTS, read  # noqa: E402

# k8s.io/apimachinery/pkg/apis/meta/v1 types reachable from the served kinds, with the markers
# upstream's types.go gives them.
META_V1 = '''
type ObjectMeta struct {
	Name string `json:"name,omitempty"`
	GenerateName string `json:"generateName,omitempty"`
	Namespace string `json:"namespace,omitempty"`
	SelfLink string `json:"selfLink,omitempty"`
	UID string `json:"uid,omitempty"`
	ResourceVersion string `json:"resourceVersion,omitempty"`
	Generation int64 `json:"generation,omitempty"`
	CreationTimestamp Time `json:"creationTimestamp,omitempty"`
	DeletionTimestamp *Time `json:"deletionTimestamp,omitempty"`
	DeletionGracePeriodSeconds *int64 `json:"deletionGracePeriodSeconds,omitempty"`
	Labels map[string]string `json:"labels,omitempty"`
	Annotations map[string]string `json:"annotations,omitempty"`
	// +patchMergeKey=uid
	// +patchStrategy=merge
	// +listType=map
	// +listMapKey=uid
	OwnerReferences []OwnerReference `json:"ownerReferences,omitempty" patchStrategy:"merge" patchMergeKey:"uid"`
	// +patchStrategy=merge
	// +listType=set
	Finalizers []string `json:"finalizers,omitempty" patchStrategy:"merge"`
	// +listType=atomic
	ManagedFields []ManagedFieldsEntry `json:"managedFields,omitempty"`
}

// +structType=atomic
type OwnerReference struct {
	APIVersion string `json:"apiVersion"`
	Kind string `json:"kind"`
	Name string `json:"name"`
	UID string `json:"uid"`
	Controller *bool `json:"controller,omitempty"`
	BlockOwnerDeletion *bool `json:"blockOwnerDeletion,omitempty"`
}

type ManagedFieldsEntry struct {
	Manager string `json:"manager,omitempty"`
}

// +structType=atomic
type LabelSelector struct {
	MatchLabels map[string]string `json:"matchLabels,omitempty"`
	// +listType=atomic
	MatchExpressions []LabelSelectorRequirement `json:"matchExpressions,omitempty"`
}

type LabelSelectorRequirement struct {
	Key string `json:"key" patchStrategy:"merge" patchMergeKey:"key"`
	Operator string `json:"operator"`
	// +listType=atomic
	Values []string `json:"values,omitempty"`
}

type Condition struct {
	Type string `json:"type"`
	Status string `json:"status"`
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`
	LastTransitionTime Time `json:"lastTransitionTime"`
	Reason string `json:"reason"`
	Message string `json:"message"`
}
'''
META_PATH = "k8s.io/apimachinery/pkg/apis/meta/v1"
SCALARS = {"Time", "MicroTime", "Duration", "Quantity", "IntOrString", "RawExtension"}


def parse(text):
    """Structs of one Go file: name -> (struct markers, [(json, go type, markers, tags)]),
    basic aliases, import aliases."""
    imports = {}
    for alias, path in re.findall(r'^\s*(\w+)?\s*"([^"]+)"\s*$', text, re.M):
        imports[alias or path.rsplit("/", 1)[-1]] = path
    aliases = dict(re.findall(r"^type (\w+) (string|bool|u?int\d*|float\d+)\s*$", text, re.M))
    structs = {}
    for m in re.finditer(r"((?:^//[^\n]*\n)*)^type (\w+) struct \{\n(.*?)^\}", text, re.M | re.S):
        smarkers = re.findall(r"^//\s*\+(\w+)=(\w+)", m.group(1), re.M)
        fields, pending = [], []
        for line in m.group(3).splitlines():
            line = line.strip()
            if line.startswith("//"):
                mk = re.match(r"//\s*\+(listType|listMapKey|mapType|structType)=(\w+)", line)
                if mk:
                    pending.append((mk.group(1), mk.group(2)))
                continue
            if not line:
                pending = []
                continue
            fm = re.match(r"^(?:(\w+)\s+)?([\w.\[\]*]+)\s+`([^`]*)`", line)
            if not fm:
                pending = []
                continue
            tag = re.search(r'json:"([^"]*)"', fm.group(3))
            if tag:
                parts = tag.group(1).split(",")
                fields.append((parts[0], fm.group(2), pending, fm.group(3), "inline" in parts[1:]))
            pending = []
        structs[m.group(2)] = (dict(smarkers), fields)
    return imports, structs, aliases


def main(repo):
    packages = {pkg: parse(read(repo, f"{pkg}/types.go")) for pkg in PACKAGES}
    packages["meta/v1"] = parse(META_V1)
    path_of = {v: k for k, v in PACKAGES.items()}
    path_of[META_PATH] = "meta/v1"
    emitted = {}

    def resolve(pkg, go_type):
        imports, structs, aliases = packages[pkg]
        if "." in go_type:
            alias, name = go_type.split(".", 1)
            other = path_of.get(imports.get(alias, ""))
            if other is None or name in SCALARS:
                return "scalar"
            return resolve(other, name)
        if go_type in aliases or go_type in ("string", "bool") or go_type in INTS:
            return "scalar"
        if go_type in SCALARS:
            return "scalar"
        if go_type in structs:
            return (pkg, go_type)
        return "scalar"

    ident = lambda pkg, name: re.sub(r"[^A-Za-z0-9]", "_", f"{pkg}.{name}").upper()

    def ty(pkg, go_type, markers, tags):
        go_type = go_type.lstrip("*")
        mk = {}
        keys = []
        for k, v in markers:
            if k == "listMapKey":
                keys.append(v)
            else:
                mk[k] = v
        if go_type.startswith("[]byte"):
            return "Ty::Scalar"
        if go_type.startswith("[]"):
            elem = ty(pkg, go_type[2:], [], "")
            kind = mk.get("listType")
            if kind is None:
                strategy = re.search(r'patchStrategy:"([^"]*)"', tags)
                key = re.search(r'patchMergeKey:"([^"]*)"', tags)
                if strategy and "merge" in strategy.group(1).split(","):
                    kind = "map" if key else "set"
                    keys = [key.group(1)] if key else []
                else:
                    kind = "atomic"
            if kind == "map":
                ks = ", ".join(f'"{k}"' for k in keys)
                return f"Ty::List(&{elem}, ListKind::Map(&[{ks}]))"
            return f"Ty::List(&{elem}, ListKind::{kind.capitalize()})"
        if go_type.startswith("map["):
            elem = ty(pkg, go_type[go_type.index("]") + 1:], [], "")
            atomic = "true" if mk.get("mapType") == "atomic" else "false"
            return f"Ty::Map(&{elem}, {atomic})"
        target = resolve(pkg, go_type)
        if target == "scalar":
            return "Ty::Scalar"
        visit(*target)
        name = ident(*target)
        if mk.get("structType") == "atomic" or mk.get("mapType") == "atomic":
            return f"Ty::Atomic(&{name})"
        return f"Ty::Struct(&{name})"

    def fields_of(pkg, name):
        out = []
        for json_name, go_type, markers, tags, inline in packages[pkg][1][name][1]:
            if json_name == "-":
                continue
            if inline or json_name == "":
                target = resolve(pkg, go_type.lstrip("*"))
                if isinstance(target, tuple) and target[1] not in ("TypeMeta", "ListMeta"):
                    out.extend(fields_of(*target))
                continue
            out.append((json_name, go_type, markers, tags, pkg))
        return out

    def visit(pkg, name):
        key = ident(pkg, name)
        if key in emitted:
            return
        emitted[key] = None
        smarkers = packages[pkg][1][name][0]
        atomic = "true" if smarkers.get("structType") == "atomic" else "false"
        lines = []
        for json_name, go_type, markers, tags, fpkg in fields_of(pkg, name):
            if json_name in ("apiVersion", "kind") and name not in ("OwnerReference",):
                pass
            lines.append(f'    Field {{ name: "{json_name}", ty: {ty(fpkg, go_type, markers, tags)} }},')
        emitted[key] = [f"pub(super) static {key}: Struct = Struct {{ atomic: {atomic}, fields: &["] + lines + ["] };", ""]

    roots = []
    for av, kind, pkg, name in ROOTS:
        visit(pkg, name)
        roots.append((av, kind, ident(pkg, name)))
    out = ["// @generated by scripts/gen/ssa_schema.py from upstream's Go API types",
           "// (k8s.io/api core/v1, apps/v1, batch/v1, coordination/v1, discovery/v1,",
           "// networking/v1; meta/v1 as written in the script). Do not edit.",
           "",
           "use super::schema::{Field, ListKind, Struct, Ty};",
           ""]
    for key in sorted(emitted):
        out.extend(emitted[key])
    out.append("/// `(apiVersion, kind, schema of the object)` for every kind with a schema.")
    out.append("pub(super) static ROOTS: &[(&str, &str, &Struct)] = &[")
    for av, kind, key in roots:
        out.append(f'    ("{av}", "{kind}", &{key}),')
    out.append("];")
    print("\n".join(out))


if __name__ == "__main__":
    main(sys.argv[1])
