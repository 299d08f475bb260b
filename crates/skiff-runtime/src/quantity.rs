//! Resource quantities of a PodSpec, parsed with `skiff_types::quantity` (the API server's own
//! parser, so the runtime rounds exactly as validation and the scheduler do).

pub use skiff_types::quantity::Quantity;

/// Parses a k8s-openapi quantity that must not be negative, naming `field` in the error.
pub(crate) fn parse_field(
    field: &str,
    quantity: &k8s_openapi::apimachinery::pkg::api::resource::Quantity,
) -> Result<Quantity, crate::RuntimeError> {
    let q = Quantity::parse(&quantity.0).map_err(|e| crate::RuntimeError::InvalidPod {
        field: field.to_owned(),
        message: e.to_string(),
    })?;
    if q.signum() < 0 {
        return Err(crate::RuntimeError::InvalidPod {
            field: field.to_owned(),
            message: format!("quantity {:?} must not be negative", quantity.0),
        });
    }
    Ok(q)
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::api::resource::Quantity as Q;

    #[test]
    fn pod_quantities_round_up_as_upstream() {
        let q = |s: &str| parse_field("f", &Q(s.into())).unwrap();
        assert_eq!(q("100m").milli_value(), 100);
        assert_eq!(q("1.0001").milli_value(), 1001);
        assert_eq!(q("128Mi").value(), 128 * 1024 * 1024);
        assert_eq!(q("0.5").value(), 1);
    }

    #[test]
    fn negative_and_malformed_quantities_name_the_field() {
        let err = parse_field(
            "spec.containers[0].resources.limits.memory",
            &Q("-1".into()),
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("limits.memory") && err.contains("negative"),
            "{err}"
        );
        let err = parse_field("x.sizeLimit", &Q("5Zi".into()))
            .unwrap_err()
            .to_string();
        assert!(err.contains("x.sizeLimit"), "{err}");
    }
}
