//! Reading manifest files: which files count, and the objects a multi-document YAML file
//! holds (`kind: List` flattened), each checked for what applying it needs.

use std::path::{Path, PathBuf};

use serde_json::Value;
use skiff_types::registry::{self, ResourceInfo};

/// One object of a manifest file, ready to apply.
#[derive(Debug, Clone)]
pub struct ManifestObject {
    /// Its resource.
    pub info: &'static ResourceInfo,
    /// Namespace (namespaced kinds; `default` when the manifest names none).
    pub namespace: Option<String>,
    /// `metadata.name`.
    pub name: String,
    /// The object as written.
    pub object: Value,
}

impl ManifestObject {
    /// `kind namespace/name` for logs.
    pub fn describe(&self) -> String {
        match &self.namespace {
            Some(ns) => format!("{} {ns}/{}", self.info.kind, self.name),
            None => format!("{} {}", self.info.kind, self.name),
        }
    }

    /// Identity for pruning: (storage name, namespace, name).
    pub fn key(&self) -> (String, Option<String>, String) {
        (
            self.info.storage_name(),
            self.namespace.clone(),
            self.name.clone(),
        )
    }
}

/// Why a manifest file cannot be applied.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum ManifestError {
    /// The file is not valid YAML.
    #[error("{file}: not valid YAML: {reason}")]
    Yaml {
        /// The file name.
        file: String,
        /// The parser's message.
        reason: String,
    },
    /// A document is not an object the API serves.
    #[error("{file}: document {index}: {reason}")]
    Document {
        /// The file name.
        file: String,
        /// 1-based document number.
        index: usize,
        /// What is wrong.
        reason: String,
    },
}

/// The manifest files of `dir` to apply, in name order: `*.yaml`, `*.yml` and `*.json`, not
/// hidden, and not disabled by a `<name>.skip` file beside them (as k3s does). Also returns
/// the names of the disabled ones.
pub fn list_files(dir: &Path) -> std::io::Result<(Vec<PathBuf>, Vec<String>)> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((Vec::new(), Vec::new())),
        Err(e) => return Err(e),
    };
    let mut files = Vec::new();
    let mut skipped = Vec::new();
    for entry in entries.flatten() {
        let path = entry.path();
        let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
            continue;
        };
        if name.starts_with('.') || !path.is_file() {
            continue;
        }
        if !(name.ends_with(".yaml") || name.ends_with(".yml") || name.ends_with(".json")) {
            continue;
        }
        if dir.join(format!("{name}.skip")).exists() {
            skipped.push(name.to_string());
            continue;
        }
        files.push(path);
    }
    files.sort();
    skipped.sort();
    Ok((files, skipped))
}

/// The objects of a manifest file's text (`file` names it in errors).
pub fn parse(file: &str, text: &str) -> Result<Vec<ManifestObject>, ManifestError> {
    let documents: Vec<Value> =
        serde_saphyr::from_str_multiple(text).map_err(|e| ManifestError::Yaml {
            file: file.to_string(),
            reason: e.to_string(),
        })?;
    let mut objects = Vec::new();
    for (i, document) in documents.into_iter().enumerate() {
        let index = i + 1;
        let bad = |reason: String| ManifestError::Document {
            file: file.to_string(),
            index,
            reason,
        };
        match document {
            Value::Null => continue,
            Value::Object(_) => {}
            _ => return Err(bad("expected an object with apiVersion and kind".into())),
        }
        if document.get("kind").and_then(Value::as_str) == Some("List") {
            let items = document
                .get("items")
                .and_then(Value::as_array)
                .ok_or_else(|| bad("a List needs `items`".into()))?;
            for (j, item) in items.iter().enumerate() {
                objects.push(
                    object(item.clone()).map_err(|reason| bad(format!("items[{j}]: {reason}")))?,
                );
            }
            continue;
        }
        objects.push(object(document).map_err(bad)?);
    }
    let mut seen = std::collections::HashSet::new();
    for o in &objects {
        if !seen.insert(o.key()) {
            return Err(ManifestError::Document {
                file: file.to_string(),
                index: 0,
                reason: format!("{} appears twice", o.describe()),
            });
        }
    }
    // Namespaces first, so objects in a namespace the same file creates can be applied.
    objects.sort_by_key(|o| o.info.kind != "Namespace");
    Ok(objects)
}

fn object(mut value: Value) -> Result<ManifestObject, String> {
    let api_version = value
        .get("apiVersion")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .ok_or("apiVersion is missing")?
        .to_string();
    let kind = value
        .get("kind")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .ok_or("kind is missing")?
        .to_string();
    let info = registry::find_by_kind(&api_version, &kind)
        .ok_or_else(|| format!("this server does not serve {kind} in {api_version}"))?;
    let meta = value
        .get("metadata")
        .and_then(Value::as_object)
        .ok_or("metadata is missing")?;
    let name = meta
        .get("name")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .ok_or_else(|| {
            format!("{kind}: metadata.name is missing (generateName cannot be applied)")
        })?
        .to_string();
    let namespace = if info.namespaced {
        Some(
            meta.get("namespace")
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty())
                .unwrap_or("default")
                .to_string(),
        )
    } else {
        None
    };
    if let Some(meta) = value.get_mut("metadata").and_then(Value::as_object_mut) {
        match &namespace {
            Some(ns) => {
                meta.insert("namespace".into(), Value::String(ns.clone()));
            }
            None => {
                meta.remove("namespace");
            }
        }
    }
    Ok(ManifestObject {
        info,
        namespace,
        name,
        object: value,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn multi_document_files_and_lists_flatten_in_order_namespaces_first() {
        let text = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a, namespace: apps}\n---\n\
                    apiVersion: v1\nkind: Namespace\nmetadata: {name: apps}\n---\n---\n\
                    apiVersion: v1\nkind: List\nitems:\n- apiVersion: v1\n  kind: ConfigMap\n  metadata: {name: b}\n";
        let objects = parse("x.yaml", text).unwrap();
        let described: Vec<String> = objects.iter().map(ManifestObject::describe).collect();
        assert_eq!(
            described,
            ["Namespace apps", "ConfigMap apps/a", "ConfigMap default/b"]
        );
        assert_eq!(objects[2].object["metadata"]["namespace"], "default");
    }

    #[test]
    fn bad_documents_name_the_file_document_and_problem() {
        let cases = [
            ("kind: ConfigMap\nmetadata: {name: a}\n", "document 1: apiVersion is missing"),
            (
                "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n---\napiVersion: example.com/v1\nkind: Widget\nmetadata: {name: w}\n",
                "document 2: this server does not serve Widget in example.com/v1",
            ),
            (
                "apiVersion: v1\nkind: ConfigMap\nmetadata: {generateName: a-}\n",
                "metadata.name is missing",
            ),
            ("- just\n- a list\n", "expected an object"),
            (
                "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: a, namespace: default}\n",
                "ConfigMap default/a appears twice",
            ),
        ];
        for (text, expected) in cases {
            let err = parse("bad.yaml", text).unwrap_err().to_string();
            assert!(err.starts_with("bad.yaml: "), "{err}");
            assert!(err.contains(expected), "{expected}: {err}");
        }
        let err = parse("broken.yaml", "a: [unclosed\n")
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("broken.yaml: not valid YAML"), "{err}");
    }

    #[test]
    fn skip_files_and_hidden_or_foreign_files_are_left_out() {
        let dir = tempfile::tempdir().unwrap();
        for name in [
            "b.yaml",
            "a.yml",
            "c.json",
            "d.yaml",
            "d.yaml.skip",
            ".hidden.yaml",
            "notes.txt",
        ] {
            std::fs::write(dir.path().join(name), "").unwrap();
        }
        let (files, skipped) = list_files(dir.path()).unwrap();
        let names: Vec<_> = files
            .iter()
            .map(|p| p.file_name().unwrap().to_str().unwrap().to_string())
            .collect();
        assert_eq!(names, ["a.yml", "b.yaml", "c.json"]);
        assert_eq!(skipped, ["d.yaml"]);
        assert_eq!(
            list_files(&dir.path().join("absent")).unwrap(),
            (Vec::new(), Vec::new())
        );
    }
}
