use super::*;
use crate::registry::find;

#[test]
fn human_durations() {
    assert_eq!(human_duration(5), "5s");
    assert_eq!(human_duration(200), "3m20s");
}

#[test]
fn pod_table_has_upstream_columns() {
    let pods = find("", "v1", "pods").expect("pods");
    let t = table_at(
        pods,
        &[],
        json!({"resourceVersion": "7"}),
        IncludeObject::Metadata,
        Timestamp::UNIX_EPOCH,
    );
    let names: Vec<&str> = t["columnDefinitions"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|c| c["name"].as_str())
        .collect();
    assert_eq!(
        names,
        [
            "Name",
            "Ready",
            "Status",
            "Restarts",
            "Age",
            "IP",
            "Node",
            "Nominated Node",
            "Readiness Gates"
        ]
    );
    assert_eq!(t["metadata"]["resourceVersion"], "7");
}
