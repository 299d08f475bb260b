#!/usr/bin/env python3
"""Generates crates/skiff-types/src/wire_fields/table.rs from upstream's Go API types.

Usage: scripts/gen/wire_fields.py <kubernetes/api checkout> > crates/skiff-types/src/wire_fields/table.rs
       cargo fmt --all

Go's encoding/json writes a field without `,omitempty` even when it holds its zero value, and
writes struct-typed fields (with or without `,omitempty`) always. Clients written against the
Go types (and tests comparing with upstream output) expect those fields. The table lists, per
Go struct reachable from a served kind, the fields Go always writes: strings, numbers and
booleans without omitempty (zero value "" / 0 / false) and nested structs (`{}`), plus the
struct fields to descend into (lists of structs, optional pointers to structs). Types of other
packages (metav1.Time, resource.Quantity, intstr, ...) marshal specially and are left alone, as
are nil slices, maps and pointers (Go writes `null` for those).
"""
import re
import subprocess
import sys

PACKAGES = {
    "core/v1": "k8s.io/api/core/v1",
    "apps/v1": "k8s.io/api/apps/v1",
    "batch/v1": "k8s.io/api/batch/v1",
    "coordination/v1": "k8s.io/api/coordination/v1",
    "discovery/v1": "k8s.io/api/discovery/v1",
    "networking/v1": "k8s.io/api/networking/v1",
}
ROOTS = [
    ("v1", "ConfigMap", "core/v1", "ConfigMap"),
    ("v1", "Endpoints", "core/v1", "Endpoints"),
    ("v1", "Event", "core/v1", "Event"),
    ("v1", "Namespace", "core/v1", "Namespace"),
    ("v1", "Node", "core/v1", "Node"),
    ("v1", "Pod", "core/v1", "Pod"),
    ("v1", "Secret", "core/v1", "Secret"),
    ("v1", "ServiceAccount", "core/v1", "ServiceAccount"),
    ("v1", "Service", "core/v1", "Service"),
    ("apps/v1", "ControllerRevision", "apps/v1", "ControllerRevision"),
    ("apps/v1", "DaemonSet", "apps/v1", "DaemonSet"),
    ("apps/v1", "Deployment", "apps/v1", "Deployment"),
    ("apps/v1", "ReplicaSet", "apps/v1", "ReplicaSet"),
    ("batch/v1", "Job", "batch/v1", "Job"),
    ("coordination.k8s.io/v1", "Lease", "coordination/v1", "Lease"),
    ("discovery.k8s.io/v1", "EndpointSlice", "discovery/v1", "EndpointSlice"),
    ("networking.k8s.io/v1", "NetworkPolicy", "networking/v1", "NetworkPolicy"),
]
INTS = {"int", "int8", "int16", "int32", "int64", "uint", "uint8", "uint16", "uint32", "uint64",
        "float32", "float64"}


def read(repo, path):
    return subprocess.run(["git", "-C", repo, "show", f"HEAD:{path}"], check=True,
                          capture_output=True, text=True).stdout


def parse_package(text, pkg):
    """Struct fields and basic type aliases of one Go file, and its import aliases."""
    imports = {}
    for alias, path in re.findall(r'^\s*(\w+)?\s*"([^"]+)"\s*$', text, re.M):
        name = alias or path.rsplit("/", 1)[-1]
        imports[name] = path
    structs, aliases = {}, {}
    for name, base in re.findall(r"^type (\w+) (string|bool|u?int\d*|float\d+)\s*$", text, re.M):
        aliases[name] = base
    for m in re.finditer(r"^type (\w+) struct \{\n(.*?)^\}", text, re.M | re.S):
        fields = []
        for line in m.group(2).splitlines():
            line = line.strip()
            if not line or line.startswith("//"):
                continue
            fm = re.match(r"^(?:(\w+)\s+)?([\w.\[\]*]+(?:\[[\w.]*\][\w.*]+)?)\s+`([^`]*)`", line)
            if not fm:
                continue
            tag = re.search(r'json:"([^"]*)"', fm.group(3))
            if not tag:
                continue
            parts = tag.group(1).split(",")
            fields.append((parts[0], fm.group(2), "omitempty" in parts[1:], "inline" in parts[1:]))
        structs[m.group(1)] = fields
    return imports, structs, aliases


def main(repo):
    packages = {}
    path_of = {v: k for k, v in PACKAGES.items()}
    for pkg in PACKAGES:
        packages[pkg] = parse_package(read(repo, f"{pkg}/types.go"), pkg)

    def resolve(pkg, go_type):
        """(package, name) of a local struct type, or a basic type name, or None."""
        imports, structs, aliases = packages[pkg]
        if "." in go_type:
            alias, name = go_type.split(".", 1)
            other = path_of.get(imports.get(alias, ""))
            if other is None:
                return None
            return resolve(other, name)
        if go_type in aliases:
            return aliases[go_type]
        if go_type in ("string", "bool") or go_type in INTS:
            return go_type
        if go_type in structs:
            return (pkg, go_type)
        return None

    table = {}

    def visit(pkg, name):
        key = f"{pkg}.{name}"
        if key in table:
            return key
        table[key] = None
        fields = []
        for json_name, go_type, omitempty, inline in packages[pkg][1][name]:
            if json_name == "-":
                continue
            if inline or (json_name == "" and not go_type.startswith("*")):
                target = resolve(pkg, go_type)
                if isinstance(target, tuple):
                    inner = visit(*target)
                    fields.extend(("inline", None, inner) for _ in [0])
                continue
            if go_type.startswith("[]"):
                target = resolve(pkg, go_type[2:])
                if isinstance(target, tuple):
                    fields.append(("list", json_name, visit(*target)))
                continue
            if go_type.startswith("*"):
                target = resolve(pkg, go_type[1:])
                if isinstance(target, tuple):
                    fields.append(("optional", json_name, visit(*target)))
                continue
            if go_type.startswith("map["):
                continue
            target = resolve(pkg, go_type)
            if isinstance(target, tuple):
                fields.append(("object", json_name, visit(*target)))
            elif target == "string" and not omitempty:
                fields.append(("string", json_name, None))
            elif target == "bool" and not omitempty:
                fields.append(("bool", json_name, None))
            elif target in INTS and not omitempty:
                fields.append(("int", json_name, None))
        table[key] = fields
        return key

    roots = [(av, kind, visit(pkg, name)) for av, kind, pkg, name in ROOTS]

    # Structs with nothing to write or descend into are dropped, except those a struct-typed
    # field names: Go writes those as `{}` even when empty.
    def useful(key, seen=()):
        if key in seen:
            return False
        for kind, _, inner in table[key]:
            if kind in ("string", "bool", "int", "object"):
                return True
            if useful(inner, seen + (key,)):
                return True
        return False

    keep = {k for k in table if useful(k)}
    keep |= {inner for fields in table.values() for kind, _, inner in fields if kind == "object"}
    ident = lambda key: re.sub(r"[^A-Za-z0-9]", "_", key).upper()
    out = ["// @generated by scripts/gen/wire_fields.py from upstream's Go API types",
           "// (k8s.io/api core/v1, apps/v1, batch/v1, coordination/v1, discovery/v1,",
           "// networking/v1). Do not edit.",
           "",
           "use super::{Field, Fill};",
           ""]
    for key in sorted(keep):
        out.append(f"const {ident(key)}: &[Field] = &[")
        for kind, json_name, inner in table[key]:
            if inner is not None and inner not in keep:
                continue
            if kind == "inline":
                out.append(f"    Field {{ name: \"\", fill: Fill::Inline({ident(inner)}) }},")
            elif kind in ("object", "list", "optional"):
                variant = {"object": "Object", "list": "List", "optional": "Optional"}[kind]
                out.append(f"    Field {{ name: \"{json_name}\", fill: Fill::{variant}({ident(inner)}) }},")
            else:
                variant = {"string": "String", "bool": "Bool", "int": "Int"}[kind]
                out.append(f"    Field {{ name: \"{json_name}\", fill: Fill::{variant} }},")
        out.append("];")
        out.append("")
    out.append("/// `(apiVersion, kind, fields of the object)` for every served kind.")
    out.append("pub(super) const ROOTS: &[(&str, &str, &[Field])] = &[")
    for av, kind, key in roots:
        fields = ident(key) if key in keep else "&[]"
        out.append(f"    (\"{av}\", \"{kind}\", {fields}),")
    out.append("];")
    print("\n".join(out))


if __name__ == "__main__":
    main(sys.argv[1])
