"""The official Python client (from PyPI) against a skiff cluster: what its users do first.

Run by tests/tests/python_client.rs with KUBECONFIG pointing at a cluster whose nodes hold the
busybox and nginx stand-in images. Each test names the client behaviour it depends on.
"""
import os
import time
import uuid

import pytest
from kubernetes import client, config, dynamic, watch
from kubernetes.client.rest import ApiException
from kubernetes.stream import portforward, stream

NAMESPACE = "default"


@pytest.fixture(scope="module")
def api():
    config.load_kube_config(os.environ["KUBECONFIG"])
    return client.ApiClient()


def unique(prefix):
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def busybox_pod(name, command, image="busybox"):
    # Typed models, no api_version/kind: the client sends neither; the server takes them from
    # the URL as kube-apiserver does.
    return client.V1Pod(
        metadata=client.V1ObjectMeta(name=name, labels={"test": "python-client"}),
        spec=client.V1PodSpec(
            termination_grace_period_seconds=1,
            containers=[client.V1Container(name="main", image=image, command=command)],
        ),
    )


def wait_running(core, name, timeout=120):
    deadline = time.time() + timeout
    while True:
        pod = core.read_namespaced_pod(name, NAMESPACE)
        statuses = pod.status.container_statuses or []
        if pod.status.phase == "Running" and statuses and all(s.ready for s in statuses):
            return pod
        assert pod.status.phase in ("Pending", "Running"), pod.status
        assert time.time() < deadline, f"pod {name} not running: {pod.status}"
        time.sleep(0.5)


def test_typed_create_without_kind_and_watch(api):
    core = client.CoreV1Api(api)
    name = unique("cm")
    events = watch.Watch().stream(
        core.list_namespaced_config_map,
        NAMESPACE,
        field_selector=f"metadata.name={name}",
        timeout_seconds=20,
        _request_timeout=30,
    )
    created = core.create_namespaced_config_map(
        NAMESPACE, client.V1ConfigMap(metadata=client.V1ObjectMeta(name=name), data={"k": "v"})
    )
    assert created.kind == "ConfigMap" and created.api_version == "v1"
    for event in events:
        if event["object"].metadata.name == name:
            assert event["type"] == "ADDED"
            assert event["object"].data == {"k": "v"}
            break
    core.delete_namespaced_config_map(name, NAMESPACE)


def test_bad_input_is_a_422_naming_the_field(api):
    core = client.CoreV1Api(api)
    with pytest.raises(ApiException) as error:
        core.create_namespaced_config_map(
            NAMESPACE, client.V1ConfigMap(metadata=client.V1ObjectMeta(name="Not_A_Name"))
        )
    assert error.value.status == 422
    assert "metadata.name" in error.value.body


def test_daemonset_reads_into_typed_models(api):
    apps = client.AppsV1Api(api)
    name = unique("ds")
    labels = {"app": name}
    body = client.V1DaemonSet(
        metadata=client.V1ObjectMeta(name=name),
        spec=client.V1DaemonSetSpec(
            selector=client.V1LabelSelector(match_labels=labels),
            template=client.V1PodTemplateSpec(
                metadata=client.V1ObjectMeta(labels=labels),
                spec=client.V1PodSpec(
                    termination_grace_period_seconds=1,
                    containers=[client.V1Container(name="main", image="busybox", command=["sleep", "3600"])],
                ),
            ),
        ),
    )
    apps.create_namespaced_daemon_set(NAMESPACE, body)
    # The status's counters are required in the typed model: zero values must be on the wire.
    status = apps.read_namespaced_daemon_set(name, NAMESPACE).status
    assert isinstance(status.desired_number_scheduled, int)
    assert isinstance(status.number_ready, int)
    apps.delete_namespaced_daemon_set(name, NAMESPACE, propagation_policy="Foreground")


def test_exec_output(api):
    core = client.CoreV1Api(api)
    name = unique("exec")
    core.create_namespaced_pod(NAMESPACE, busybox_pod(name, ["sleep", "3600"]))
    try:
        wait_running(core, name)
        output = stream(
            core.connect_get_namespaced_pod_exec, name, NAMESPACE,
            command=["sh", "-c", "echo out; echo err >&2"], stderr=True, stdin=False, stdout=True, tty=False,
        )
        assert "out" in output
    finally:
        core.delete_namespaced_pod(name, NAMESPACE, grace_period_seconds=0)


# The client writes `str` stdin as WebSocket *text* frames, which the API server reads as
# binary ones (as upstream's wsstream does).
def test_exec_with_interactive_stdin_and_exit_code(api):
    core = client.CoreV1Api(api)
    name = unique("exec")
    core.create_namespaced_pod(NAMESPACE, busybox_pod(name, ["sleep", "3600"]))
    try:
        wait_running(core, name)
        session = stream(
            core.connect_get_namespaced_pod_exec, name, NAMESPACE,
            command=["sh", "-c", "read line; echo got:$line; exit 3"],
            stderr=True, stdin=True, stdout=True, tty=False, _preload_content=False,
        )
        session.write_stdin("hello\n")
        out = ""
        deadline = time.time() + 30
        while session.is_open() and time.time() < deadline:
            session.update(timeout=1)
            if session.peek_stdout():
                out += session.read_stdout()
        assert "got:hello" in out
        assert session.returncode == 3
    finally:
        core.delete_namespaced_pod(name, NAMESPACE, grace_period_seconds=0)


def test_portforward_to_nginx(api):
    core = client.CoreV1Api(api)
    name = unique("nginx")
    core.create_namespaced_pod(
        NAMESPACE,
        client.V1Pod(
            metadata=client.V1ObjectMeta(name=name),
            spec=client.V1PodSpec(containers=[client.V1Container(name="nginx", image="nginx")]),
        ),
    )
    try:
        wait_running(core, name)
        deadline = time.time() + 30
        while True:
            forward = portforward(core.connect_get_namespaced_pod_portforward, name, NAMESPACE, ports="80")
            sock = forward.socket(80)
            sock.setblocking(True)
            sock.settimeout(10)
            sock.sendall(b"GET / HTTP/1.0\r\nHost: nginx\r\n\r\n")
            reply = b""
            try:
                while chunk := sock.recv(4096):
                    reply += chunk
            except OSError:
                pass
            sock.close()
            forward.close()
            if b"Welcome to nginx!" in reply or time.time() > deadline:
                break
            time.sleep(0.5)  # httpd may still be starting
        assert b"200 OK" in reply and b"Welcome to nginx!" in reply, reply
    finally:
        core.delete_namespaced_pod(name, NAMESPACE, grace_period_seconds=0)


def test_server_side_apply_with_the_dynamic_client(api):
    dyn = dynamic.DynamicClient(api)
    configmaps = dyn.resources.get(api_version="v1", kind="ConfigMap")
    name = unique("ssa")
    manifest = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": {"a": "1", "b": "2"}}
    configmaps.server_side_apply(body=manifest, field_manager="python-e2e", namespace=NAMESPACE)
    manifest["data"] = {"a": "1"}
    applied = configmaps.server_side_apply(body=manifest, field_manager="python-e2e", namespace=NAMESPACE)
    # The field the manager stopped applying is gone; the manager is recorded.
    assert dict(applied.data) == {"a": "1"}
    managers = [entry.manager for entry in applied.metadata.managedFields]
    assert "python-e2e" in managers
    configmaps.delete(name=name, namespace=NAMESPACE)
