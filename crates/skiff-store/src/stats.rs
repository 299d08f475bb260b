//! Group-commit figures.

/// Figures about group commit, for benchmarks and logs.
#[derive(Debug, Default, Clone, Copy)]
pub struct CommitStats {
    /// Transactions committed.
    pub commits: u64,
    /// Write requests answered.
    pub writes: u64,
    /// Largest batch seen.
    pub max_batch: u64,
}
