//! The scheduler and the control loops (deployment, replicaset, daemonset, job, node lifecycle, garbage collection), driven through kube-runtime.
