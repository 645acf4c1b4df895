"""The docker-compose and Kubernetes files run real TF Serving on what the Pusher writes."""
import os
import re

import pytest
import yaml

from serving import layout, model_config, release_state

DEPLOY = os.path.join(os.path.dirname(model_config.__file__), "deploy")
CONTRACT = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(DEPLOY))), "shared", "reference",
                        "tf-serving-contract.md")
IMAGE = "tensorflow/serving:2.16.1"

# tensorflow_model_server's flags as the TF Serving contract lists them: §0 (process surface),
# §6 (--monitoring_config_file) and §7 (--enable_batching, --batching_parameters_file).
CONTRACT_FLAGS = {
    "port", "grpc_socket_path", "enable_grpc_healthcheck_service", "rest_api_port", "rest_api_num_threads",
    "rest_api_timeout_in_ms", "rest_api_enable_cors_support", "model_name", "model_base_path",
    "model_config_file", "model_config_file_poll_wait_seconds", "file_system_poll_wait_seconds",
    "max_num_load_retries", "load_retry_interval_micros", "enable_model_warmup",
    "enable_signature_method_name_check", "allow_version_labels_for_unavailable_models", "saved_model_tags",
    "monitoring_config_file", "enable_batching", "batching_parameters_file",
}


def load(*parts):
    with open(os.path.join(DEPLOY, *parts)) as handle:
        return list(yaml.safe_load_all(handle))


def server_args():
    """The tensorflow_model_server arguments of each deployment, by file."""
    compose = load("docker-compose.yml")[0]["services"]["tf-serving"]
    deployment = load("kubernetes", "deployment.yaml")[0]["spec"]["template"]["spec"]["containers"][0]
    kserve = load("kubernetes", "inferenceservice.yaml")[0]["spec"]["predictor"]["containers"][0]
    return {"docker-compose.yml": (compose["entrypoint"], compose["command"]),
            "deployment.yaml": (deployment["command"], deployment["args"]),
            "inferenceservice.yaml": (kserve["command"], kserve["args"])}


def flags(args):
    parsed = {}
    for arg in args:
        match = re.fullmatch(r"--([a-z_]+)(?:=(.*))?", arg)
        assert match, f"not a --flag: {arg}"
        parsed[match.group(1)] = match.group(2)
    return parsed


def test_every_file_parses_as_yaml_of_the_expected_kind():
    assert load("kubernetes", "deployment.yaml")[0]["kind"] == "Deployment"
    assert load("kubernetes", "service.yaml")[0]["kind"] == "Service"
    inference = load("kubernetes", "inferenceservice.yaml")[0]
    assert (inference["apiVersion"], inference["kind"]) == ("serving.kserve.io/v1beta1", "InferenceService")
    assert inference["spec"]["predictor"]["containers"][0]["name"] == "kserve-container"
    assert load("docker-compose.yml")[0]["services"]["tf-serving"]["image"] == IMAGE


@pytest.mark.parametrize("name", ["docker-compose.yml", "deployment.yaml", "inferenceservice.yaml"])
def test_the_server_flags_are_tf_servings_own(name):
    command, args = server_args()[name]
    assert command == ["tensorflow_model_server"]
    passed = flags(args)
    assert set(passed) <= CONTRACT_FLAGS, set(passed) - CONTRACT_FLAGS
    assert passed["port"] == "8500" and passed["rest_api_port"] == "8501"
    assert passed["model_config_file_poll_wait_seconds"] == "60"
    # The file without --enable_batching is a start-up error (contract §7).
    assert "enable_batching" in passed and passed["batching_parameters_file"]
    # Labels in models.config point at versions still loading at start-up (contract §4.4).
    assert passed["allow_version_labels_for_unavailable_models"] == "true"


def test_all_deployments_run_the_same_image_and_arguments():
    compose = load("docker-compose.yml")[0]["services"]["tf-serving"]
    deployment = load("kubernetes", "deployment.yaml")[0]["spec"]["template"]["spec"]["containers"][0]
    kserve = load("kubernetes", "inferenceservice.yaml")[0]["spec"]["predictor"]["containers"][0]
    assert compose["image"] == deployment["image"] == kserve["image"] == IMAGE
    assert compose["command"] == deployment["args"] == kserve["args"]


@pytest.mark.skipif(not os.path.exists(CONTRACT), reason="the TF Serving contract is not checked out here")
def test_the_flag_list_matches_the_contract():
    with open(CONTRACT) as handle:
        text = handle.read()
    documented = set(re.findall(r"`--([a-z_]+)", text)) | set(re.findall(r"`([a-z_]+)` = ", text))
    assert CONTRACT_FLAGS <= documented, CONTRACT_FLAGS - documented


def test_the_referenced_files_are_the_ones_a_push_writes(tmp_path):
    (tmp_path / "taxi" / "100").mkdir(parents=True)
    release_state.write_serving_configs(str(tmp_path), "taxi", 100)
    compose = load("docker-compose.yml")[0]["services"]["tf-serving"]
    assert compose["volumes"][0].rsplit(":", 2)[1:] == [layout.CONTAINER_MODELS_DIR, "ro"]
    for name, (_, args) in server_args().items():
        passed = flags(args)
        referenced = [passed["model_config_file"], passed["monitoring_config_file"], passed["batching_parameters_file"]]
        assert referenced == [f"/models/{layout.MODELS_CONFIG}", f"/models/{layout.MONITORING_CONFIG}",
                              f"/models/{layout.BATCHING_PARAMETERS}"], name
        for path in referenced:
            assert os.path.isfile(tmp_path / os.path.relpath(path, layout.CONTAINER_MODELS_DIR)), path
    # models.config's base path lies under the mount, so TF Serving finds <version>/ directories there.
    entry = model_config.find_model(model_config.read_model_server_config(str(tmp_path / "models.config")), "taxi")
    assert os.path.isdir(tmp_path / os.path.relpath(entry.base_path, layout.CONTAINER_MODELS_DIR) / "100")


def test_kubernetes_pods_mount_the_serving_directory_at_models():
    deployment = load("kubernetes", "deployment.yaml")[0]["spec"]["template"]["spec"]
    predictor = load("kubernetes", "inferenceservice.yaml")[0]["spec"]["predictor"]
    for pod in (deployment, predictor):
        mount = pod["containers"][0]["volumeMounts"][0]
        assert mount["mountPath"] == layout.CONTAINER_MODELS_DIR
        assert [volume["name"] for volume in pod["volumes"]] == [mount["name"]]


def test_probes_ask_tf_serving_for_the_model_status_on_the_rest_port():
    deployment = load("kubernetes", "deployment.yaml")[0]["spec"]["template"]["spec"]["containers"][0]
    kserve = load("kubernetes", "inferenceservice.yaml")[0]["spec"]["predictor"]["containers"][0]
    for container in (deployment, kserve):
        for probe in ("readinessProbe", "livenessProbe"):
            assert container[probe]["httpGet"] == {"path": "/v1/models/taxi", "port": 8501}, probe


def test_ports_are_rest_8501_and_grpc_8500_and_the_service_selects_the_pods():
    compose = load("docker-compose.yml")[0]["services"]["tf-serving"]
    assert sorted(port.split("#")[0].strip() for port in compose["ports"]) == ["8500:8500", "8501:8501"]
    deployment = load("kubernetes", "deployment.yaml")[0]
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert {port["name"]: port["containerPort"] for port in container["ports"]} == {"grpc": 8500, "http": 8501}
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert deployment["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
    service = load("kubernetes", "service.yaml")[0]
    assert service["spec"]["selector"].items() <= pod_labels.items()
    assert {port["port"]: port["targetPort"] for port in service["spec"]["ports"]} == {8500: "grpc", 8501: "http"}
