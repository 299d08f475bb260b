//! `continue` tokens, encoded as upstream does: base64url (no padding) of
//! `{"v":"meta.k8s.io/v1","rv":<revision>,"start":"<key>\u0000"}`.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde::{Deserialize, Serialize};

use crate::StoreError;

const VERSION: &str = "meta.k8s.io/v1";

#[derive(Serialize, Deserialize)]
struct Token {
    v: String,
    rv: u64,
    start: String,
}

/// A token that resumes after `last_key` at `revision`.
pub(crate) fn encode(revision: u64, last_key: &str) -> String {
    let t = Token {
        v: VERSION.into(),
        rv: revision,
        start: format!("{last_key}\0"),
    };
    // Serializing a struct of strings and an integer cannot fail.
    let json = serde_json::to_vec(&t).unwrap_or_default();
    URL_SAFE_NO_PAD.encode(json)
}

/// The revision and the start key (inclusive) a token encodes.
pub(crate) fn decode(token: &str) -> Result<(u64, String), StoreError> {
    let invalid = |m: &str| StoreError::InvalidContinue {
        message: m.to_string(),
    };
    let bytes = URL_SAFE_NO_PAD
        .decode(token.trim_end_matches('='))
        .map_err(|_| invalid("incorrect encoded start resourceVersion (version meta.k8s.io/v1)"))?;
    let t: Token = serde_json::from_slice(&bytes).map_err(|_| invalid("not a continue token"))?;
    if t.v != VERSION {
        return Err(invalid("server does not recognize this encoded version"));
    }
    if t.rv == 0 {
        return Err(invalid(
            "incorrect encoded start resourceVersion (version meta.k8s.io/v1)",
        ));
    }
    if t.start.is_empty() {
        return Err(invalid("encoded start key empty (version meta.k8s.io/v1)"));
    }
    if t.start.contains("..") || t.start.starts_with('/') {
        return Err(invalid("start key may not contain a relative path"));
    }
    Ok((t.rv, t.start))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let t = encode(42, "default/web-1");
        assert_eq!(decode(&t).unwrap(), (42, "default/web-1\0".to_string()));
    }

    #[test]
    fn rejects_garbage() {
        for bad in [
            "%%%",
            "abc",
            &URL_SAFE_NO_PAD.encode(br#"{"v":"x","rv":1,"start":"a"}"#),
            &URL_SAFE_NO_PAD.encode(br#"{"v":"meta.k8s.io/v1","rv":0,"start":"a"}"#),
            &URL_SAFE_NO_PAD.encode(br#"{"v":"meta.k8s.io/v1","rv":3,"start":""}"#),
            &URL_SAFE_NO_PAD.encode(br#"{"v":"meta.k8s.io/v1","rv":3,"start":"../x"}"#),
        ] {
            let e = decode(bad).unwrap_err();
            assert!(
                matches!(e, StoreError::InvalidContinue { .. }),
                "{bad}: {e}"
            );
            assert!(e.to_string().starts_with("continue key is not valid: "));
        }
    }
}
