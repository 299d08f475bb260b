use serde_json::json;

use super::*;

/// A minimal protobuf writer for building test inputs.
#[derive(Default)]
struct W(Vec<u8>);

impl W {
    fn varint(&mut self, mut v: u64) {
        loop {
            let b = (v & 0x7f) as u8;
            v >>= 7;
            if v == 0 {
                self.0.push(b);
                return;
            }
            self.0.push(b | 0x80);
        }
    }
    fn key(&mut self, tag: u32, wt: u8) {
        self.varint((u64::from(tag) << 3) | u64::from(wt));
    }
    fn bytes(mut self, tag: u32, b: &[u8]) -> Self {
        self.key(tag, 2);
        self.varint(b.len() as u64);
        self.0.extend_from_slice(b);
        self
    }
    fn str(self, tag: u32, s: &str) -> Self {
        self.bytes(tag, s.as_bytes())
    }
    fn int(mut self, tag: u32, v: i64) -> Self {
        self.key(tag, 0);
        self.varint(v as u64);
        self
    }
    fn msg(self, tag: u32, m: W) -> Self {
        self.bytes(tag, &m.0)
    }
}

fn envelope(api_version: &str, kind: &str, raw: W) -> Vec<u8> {
    let type_meta = W::default().str(1, api_version).str(2, kind);
    let unknown = W::default().msg(1, type_meta).msg(2, raw);
    let mut out = MAGIC.to_vec();
    out.extend(unknown.0);
    out
}

#[test]
fn namespace_as_kubectl_sends_it() {
    let meta = W::default()
        .str(1, "demo")
        .msg(11, W::default().str(1, "team").str(2, "edge"));
    let body = envelope(
        "v1",
        "Namespace",
        W::default().msg(1, meta).msg(2, W::default()),
    );
    let v = decode_body(&body).unwrap();
    assert_eq!(
        v,
        json!({"apiVersion": "v1", "kind": "Namespace",
               "metadata": {"name": "demo", "labels": {"team": "edge"}}, "spec": {}})
    );
}

#[test]
fn deployment_with_special_types() {
    let container = W::default()
        .str(1, "web")
        .str(2, "nginx:1.25")
        .msg(6, W::default().int(3, 80).str(4, "TCP"))
        .msg(
            8,
            W::default().msg(
                1,
                W::default()
                    .str(1, "cpu")
                    .msg(2, W::default().str(1, "250m")),
            ),
        );
    // Go writes unset plain strings as "" (restartPolicy here): they must read as missing.
    let pod_spec = W::default().msg(2, container).int(4, 30).str(3, "");
    let template = W::default()
        .msg(
            1,
            W::default().msg(11, W::default().str(1, "app").str(2, "web")),
        )
        .msg(2, pod_spec);
    let strategy = W::default().str(1, "RollingUpdate").msg(
        2,
        W::default()
            .msg(1, W::default().int(1, 1).str(3, "25%"))
            .msg(2, W::default().int(1, 0).int(2, 2)),
    );
    let spec = W::default()
        .int(1, 3)
        .msg(
            2,
            W::default().msg(1, W::default().str(1, "app").str(2, "web")),
        )
        .msg(3, template)
        .msg(4, strategy);
    let meta = W::default()
        .str(1, "web")
        .str(3, "demo")
        .msg(8, W::default().int(1, 1_700_000_000))
        .msg(9, W::default().int(1, -62_135_596_800));
    let body = envelope(
        "apps/v1",
        "Deployment",
        W::default().msg(1, meta).msg(2, spec),
    );
    let v = decode_body(&body).unwrap();
    assert_eq!(v["metadata"]["creationTimestamp"], "2023-11-14T22:13:20Z");
    assert!(
        v["metadata"].get("deletionTimestamp").is_none(),
        "Go zero time is unset"
    );
    assert_eq!(v["spec"]["replicas"], 3);
    assert_eq!(v["spec"]["selector"]["matchLabels"]["app"], "web");
    let c = &v["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(c["image"], "nginx:1.25");
    assert_eq!(c["ports"][0]["containerPort"], 80);
    assert_eq!(c["resources"]["limits"]["cpu"], "250m");
    assert_eq!(
        v["spec"]["template"]["spec"]["terminationGracePeriodSeconds"],
        30
    );
    assert_eq!(
        v["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"],
        "25%"
    );
    assert_eq!(v["spec"]["strategy"]["rollingUpdate"]["maxSurge"], 2);
}

#[test]
fn secrets_bytes_become_base64_and_inline_structs_flatten() {
    let secret = W::default()
        .msg(1, W::default().str(1, "s"))
        .msg(2, W::default().str(1, "password").bytes(2, b"hunter2"));
    let v = decode_body(&envelope("v1", "Secret", secret)).unwrap();
    assert_eq!(v["data"]["password"], "aHVudGVyMg==");
    // Volume embeds VolumeSource: its fields appear on the volume itself.
    let volume = W::default().str(1, "cfg").msg(
        2,
        W::default().msg(19, W::default().msg(1, W::default().str(1, "my-config"))),
    );
    let pod = W::default()
        .msg(1, W::default().str(1, "p"))
        .msg(2, W::default().msg(1, volume));
    let v = decode_body(&envelope("v1", "Pod", pod)).unwrap();
    assert_eq!(
        v["spec"]["volumes"][0],
        json!({"name": "cfg", "configMap": {"name": "my-config"}})
    );
}

#[test]
fn hostile_bodies_are_errors_not_panics() {
    assert!(decode_body(b"not protobuf").is_err());
    assert!(decode_body(b"k8s\x00").is_err(), "no type meta");
    let mut truncated = envelope("v1", "Namespace", W::default().str(1, "x"));
    truncated.truncate(truncated.len() - 1);
    assert!(decode_body(&truncated).is_err());
    let unknown_kind = envelope("v1", "Widget", W::default());
    assert!(decode_body(&unknown_kind).unwrap_err().0.contains("Widget"));
    // A length prefix far larger than the body.
    let mut big = MAGIC.to_vec();
    big.extend([0x12, 0xff, 0xff, 0xff, 0x0f]);
    assert!(decode_body(&big).is_err());
    // Random bytes after the prefix never panic.
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    for _ in 0..2000 {
        let mut body = MAGIC.to_vec();
        for _ in 0..(seed % 64) {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            body.push(seed as u8);
        }
        let _ = decode_body(&body);
    }
}

#[test]
fn endpoint_slice_as_a_controller_sends_it() {
    let endpoint = W::default()
        .str(1, "10.42.1.7")
        .msg(2, W::default().int(1, 1).int(3, 0))
        .str(6, "edge-1");
    let port = W::default().str(1, "http").str(2, "TCP").int(3, 8080);
    let body = envelope(
        "discovery.k8s.io/v1",
        "EndpointSlice",
        W::default()
            .msg(1, W::default().str(1, "web-abc"))
            .msg(2, endpoint)
            .msg(3, port)
            .str(4, "IPv4"),
    );
    assert_eq!(
        decode_body(&body).unwrap(),
        json!({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
               "metadata": {"name": "web-abc"}, "addressType": "IPv4",
               "endpoints": [{"addresses": ["10.42.1.7"], "nodeName": "edge-1",
                              "conditions": {"ready": true, "terminating": false}}],
               "ports": [{"name": "http", "protocol": "TCP", "port": 8080}]})
    );
}

#[test]
fn network_policy_with_named_port_and_ip_block() {
    let selector = W::default().msg(1, W::default().str(1, "role").str(2, "db"));
    let peer = W::default().msg(3, W::default().str(1, "10.0.0.0/8").str(2, "10.1.0.0/16"));
    // IntOrString: type 1 (string), strVal "pg".
    let port = W::default()
        .str(1, "TCP")
        .msg(2, W::default().int(1, 1).str(3, "pg"));
    let rule = W::default().msg(1, port).msg(2, peer);
    let spec = W::default().msg(1, selector).msg(2, rule).str(4, "Ingress");
    let body = envelope(
        "networking.k8s.io/v1",
        "NetworkPolicy",
        W::default().msg(1, W::default().str(1, "db")).msg(2, spec),
    );
    assert_eq!(
        decode_body(&body).unwrap(),
        json!({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
               "metadata": {"name": "db"},
               "spec": {"podSelector": {"matchLabels": {"role": "db"}},
                        "ingress": [{"ports": [{"protocol": "TCP", "port": "pg"}],
                                     "from": [{"ipBlock": {"cidr": "10.0.0.0/8",
                                                           "except": ["10.1.0.0/16"]}}]}],
                        "policyTypes": ["Ingress"]}})
    );
}
