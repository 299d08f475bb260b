//! The one proptest configuration of the fuzz targets: a short budget in CI, a long one by hand.

use proptest::test_runner::{Config, FileFailurePersistence};

/// `cases` per property unless `PROPTEST_CASES` asks for more (a long run by hand). Failures
/// are kept in `regressions` (a committed file, replayed before new cases) when given, else
/// where proptest keeps them by default (beside the source file).
pub fn config(cases: u32, regressions: Option<&'static str>) -> Config {
    let mut config = if std::env::var_os("PROPTEST_CASES").is_some() {
        Config::default()
    } else {
        Config::with_cases(cases)
    };
    if let Some(path) = regressions {
        config.failure_persistence = Some(Box::new(FileFailurePersistence::Direct(path)));
    }
    config
}
