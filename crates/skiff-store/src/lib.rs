//! The embedded redb datastore: global revisions, optimistic concurrency, list and watch from a revision, compaction, group commit.
