//! OCI content store, archive import, registry pull, safe layer unpacking and rootfs snapshots.
