"""Deploy files: parsed, rendered and checked against the Kubernetes schemas without Docker,
kubectl or a network. The kustomizations are rendered by a small renderer here (the fields they
use: resources, namespace, labels, images); where kubectl is installed, its own rendering must
match. Schemas come from the kubernetes-validate package (bundled, offline)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from adapters import registry
from service.settings import Settings, SettingsError, read_env_file
from tests.helpers import SECRET_VARIABLES, ImageFacts, image_facts, instructions, parse_dockerfile

yaml = pytest.importorskip("yaml", reason="PyYAML is a test dependency")
kubernetes_validate = pytest.importorskip("kubernetes_validate", reason="kubernetes-validate is a test dependency")

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
K8S = DEPLOY / "k8s"
KUBERNETES_VERSION = "1.30.0"  # the oldest minor we support; kubernetes-validate ships its schemas
LISTPACK_VALUE = 1024  # Redis hash-max-listpack-value in both deployments (bench/README.md, finding 5)

# DESIGN.md, "Configuration (environment)": the contract's variable names (hard-coded on purpose:
# CI must not depend on the shared docs beside the clone).
DESIGN_VARIABLES = (
    "PAYRELAY_REDIS_URL",
    "PAYRELAY_PUBLIC_URL",
    "PAYRELAY_API_KEYS",
    "PAYRELAY_CLIENTS_FILE",
    "PAYRELAY_NOTIFY_URL",
    "PAYRELAY_NOTIFY_SECRET",
    "PAYRELAY_PAYMENT_TTL",
    "PAYRELAY_AMOUNT_UNIT",
    "PAYRELAY_REDIRECT_HOSTS",
    "PAYRELAY_RETENTION_DAYS",
    "PAYRELAY_CLOUDREVE_KEY",
    "PAYRELAY_CONSOLE_USERS",
    "PAYRELAY_STRIPE_SECRET_KEY",
    "PAYRELAY_STRIPE_WEBHOOK_SECRET",
    "PAYRELAY_STRIPE_CONNECT_ACCOUNT",
    "PAYRELAY_STRIPE_API_BASE",
    "PAYRELAY_ALIPAY_APP_ID",
    "PAYRELAY_ALIPAY_PRIVATE_KEY",
    "PAYRELAY_ALIPAY_PUBLIC_KEY",
    "PAYRELAY_ALIPAY_GATEWAY_URL",
    "PAYRELAY_WECHAT_MCHID",
    "PAYRELAY_WECHAT_APPID",
    "PAYRELAY_WECHAT_PRIVATE_KEY",
    "PAYRELAY_WECHAT_CERT_SERIAL_NO",
    "PAYRELAY_WECHAT_APIV3_KEY",
    "PAYRELAY_WECHAT_PUBLIC_KEY",
    "PAYRELAY_WECHAT_PUBLIC_KEY_ID",
    "PAYRELAY_WECHAT_API_BASE",
)
# PAYRELAY_CLIENTS_FILE is itself a path (to a secret file): it has no _FILE form.
PLAIN_VARIABLES = tuple(v for v in DESIGN_VARIABLES if v not in SECRET_VARIABLES)

# Sample values that make every gateway configured, for wiring tests (not real keys).
SAMPLE_SECRETS = {
    "PAYRELAY_API_KEYS": "storage:sample-key-1,storage:sample-key-2",
    "PAYRELAY_NOTIFY_SECRET": "sample-notify-new,sample-notify-old",
    "PAYRELAY_CLOUDREVE_KEY": "sample-communication-key",
    "PAYRELAY_STRIPE_SECRET_KEY": "sk_test_sample",
    "PAYRELAY_STRIPE_WEBHOOK_SECRET": "whsec_sample_new,whsec_sample_old",
    "PAYRELAY_ALIPAY_PRIVATE_KEY": "sample alipay private key",
    "PAYRELAY_ALIPAY_PUBLIC_KEY": "sample alipay public key",
    "PAYRELAY_WECHAT_PRIVATE_KEY": "sample wechat private key",
    "PAYRELAY_WECHAT_APIV3_KEY": "0123456789abcdef0123456789abcdef",
    "PAYRELAY_WECHAT_PUBLIC_KEY": "sample wechat public key",
}
SAMPLE_PLAIN = {
    "PAYRELAY_ALIPAY_APP_ID": "2021000000000000",
    "PAYRELAY_WECHAT_MCHID": "1900000001",
    "PAYRELAY_WECHAT_APPID": "wx0000000000000000",
    "PAYRELAY_WECHAT_CERT_SERIAL_NO": "SAMPLESERIAL",
    "PAYRELAY_WECHAT_PUBLIC_KEY_ID": "PUB_KEY_ID_0000000000000000000000000000",
}
# What a real secret looks like; none may be committed.
REAL_SECRET = re.compile(r"-----BEGIN|sk_live_\w|rk_live_\w|whsec_\w{8}")


# --- a kustomize renderer for the fields our kustomizations use ---------------------------------

KUSTOMIZATION_FIELDS = {"apiVersion", "kind", "namespace", "labels", "resources", "images"}
CLUSTER_SCOPED = {"Namespace", "ClusterRole", "ClusterRoleBinding", "PersistentVolume", "StorageClass"}


def load_yaml(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")) if doc is not None]


def containers(doc: dict[str, Any]) -> list[dict[str, Any]]:
    pod = doc.get("spec", {}).get("template", {}).get("spec", {})
    return [*pod.get("initContainers", []), *pod.get("containers", [])]


def image_name(image: str) -> str:
    name = image.split("@", 1)[0]
    head, _, tail = name.rpartition(":")
    return head if head and "/" not in tail else name


def render(directory: Path) -> list[dict[str, Any]]:
    """What `kustomize build directory` gives, for the transformers listed above."""
    (kustomization,) = load_yaml(directory / "kustomization.yaml")
    assert kustomization["kind"] == "Kustomization"
    unknown = set(kustomization) - KUSTOMIZATION_FIELDS
    assert not unknown, f"{directory}: render() does not implement {sorted(unknown)}"
    docs: list[dict[str, Any]] = []
    for entry in kustomization.get("resources", []):
        path = directory / entry
        docs.extend(render(path) if path.is_dir() else load_yaml(path))
    for doc in docs:
        metadata = doc["metadata"]
        if kustomization.get("namespace") and doc["kind"] not in CLUSTER_SCOPED:
            metadata["namespace"] = kustomization["namespace"]
        for label in kustomization.get("labels", []):
            assert set(label) == {"pairs"}, "render() adds labels to metadata only"
            metadata.setdefault("labels", {}).update(label["pairs"])
        for image in kustomization.get("images", []):
            for container in containers(doc):
                if image_name(container["image"]) == image["name"]:
                    container["image"] = f"{image.get('newName', image['name'])}:{image['newTag']}"
    return docs


def by_kind_and_name(docs: list[dict[str, Any]]) -> dict[tuple[str, str], dict[str, Any]]:
    found = {(doc["kind"], doc["metadata"]["name"]): doc for doc in docs}
    assert len(found) == len(docs), "two resources share a kind and name"
    return found


KUSTOMIZATIONS = [K8S, K8S / "redis"]


@pytest.fixture(scope="module")
def manifests() -> dict[tuple[str, str], dict[str, Any]]:
    return by_kind_and_name(render(K8S))


def one(manifests: dict[tuple[str, str], dict[str, Any]], kind: str) -> dict[str, Any]:
    (doc,) = [doc for (k, _), doc in manifests.items() if k == kind]
    return doc


def deployment(manifests: dict[tuple[str, str], dict[str, Any]], component: str) -> dict[str, Any]:
    (doc,) = [
        doc
        for (kind, _), doc in manifests.items()
        if kind == "Deployment" and doc["metadata"]["labels"]["app.kubernetes.io/component"] == component
    ]
    return doc


# --- every file parses ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "path", sorted([*DEPLOY.rglob("*.yaml"), *DEPLOY.rglob("*.yml")]), ids=lambda p: str(p.relative_to(DEPLOY))
)
def test_yaml_parses(path: Path) -> None:
    assert load_yaml(path), f"{path} is empty"


# --- Kubernetes ----------------------------------------------------------------------------------


@pytest.mark.parametrize("directory", KUSTOMIZATIONS, ids=lambda p: str(p.relative_to(DEPLOY)))
def test_manifests_match_the_kubernetes_schemas(directory: Path) -> None:
    docs = render(directory)
    assert docs
    for doc in docs:
        try:
            kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)
        except kubernetes_validate.ValidationError as exc:
            pytest.fail(f"{doc['kind']}/{doc['metadata']['name']}: {exc.message} at {list(exc.path)}")


@pytest.mark.parametrize("directory", KUSTOMIZATIONS, ids=lambda p: str(p.relative_to(DEPLOY)))
def test_render_matches_kubectl_kustomize(directory: Path) -> None:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl is not installed")
    result = subprocess.run(
        [kubectl, "kustomize", str(directory)], capture_output=True, text=True, timeout=60, check=False
    )
    if result.returncode != 0:
        pytest.fail(f"kubectl kustomize failed: {result.stderr}")
    theirs = [doc for doc in yaml.safe_load_all(result.stdout) if doc is not None]
    assert by_kind_and_name(theirs) == by_kind_and_name(render(directory))


def test_the_expected_resources_are_there(manifests: dict[tuple[str, str], dict[str, Any]]) -> None:
    kinds = sorted(kind for kind, _ in manifests)
    assert kinds == sorted(
        [
            "Namespace",
            "ConfigMap",
            "Secret",
            "Deployment",
            "Deployment",
            "Service",
            "HorizontalPodAutoscaler",
            "PodDisruptionBudget",
        ]
    )
    assert one(manifests, "HorizontalPodAutoscaler")["apiVersion"] == "autoscaling/v2"
    assert one(manifests, "PodDisruptionBudget")["apiVersion"] == "policy/v1"
    for doc in manifests.values():
        assert doc["metadata"]["labels"]["app.kubernetes.io/part-of"] == "payrelay"
        if doc["kind"] != "Namespace":
            assert doc["metadata"]["namespace"] == "payrelay"


def test_every_design_variable_is_wired_in_kubernetes(manifests: dict[tuple[str, str], dict[str, Any]]) -> None:
    config = one(manifests, "ConfigMap")["data"]
    for name in PLAIN_VARIABLES:
        assert name in config, f"{name} is not in the ConfigMap"
    for name in SECRET_VARIABLES:
        assert name not in config, f"{name} is a secret: it belongs in the Secret, read via {name}_FILE"
        assert f"{name}_FILE" in config, f"{name}_FILE is not in the ConfigMap"
    for web_or_worker in ("web", "worker"):
        (container,) = containers(deployment(manifests, web_or_worker))
        refs = [ref["configMapRef"]["name"] for ref in container.get("envFrom", [])]
        assert one(manifests, "ConfigMap")["metadata"]["name"] in refs


def test_every_secret_file_is_a_key_of_the_mounted_secret(
    manifests: dict[tuple[str, str], dict[str, Any]],
) -> None:
    config = one(manifests, "ConfigMap")["data"]
    secret = one(manifests, "Secret")
    paths = {name: config[f"{name}_FILE"] for name in SECRET_VARIABLES}
    paths["PAYRELAY_CLIENTS_FILE"] = config["PAYRELAY_CLIENTS_FILE"]
    for web_or_worker in ("web", "worker"):
        doc = deployment(manifests, web_or_worker)
        volumes = {v["name"]: v for v in doc["spec"]["template"]["spec"]["volumes"]}
        (container,) = containers(doc)
        mounts = {
            m["mountPath"]: volumes[m["name"]]["secret"]["secretName"]
            for m in container["volumeMounts"]
            if "secret" in volumes[m["name"]]
        }
        for name, path in paths.items():
            directory, _, key = path.rpartition("/")
            assert mounts.get(directory) == secret["metadata"]["name"], f"{web_or_worker}: {name} not mounted"
            assert key in secret["stringData"], f"{name}: the Secret has no key {key!r}"
    assert set(secret["stringData"]) == {path.rpartition("/")[2] for path in paths.values()}


def test_secret_holds_placeholders_only(manifests: dict[tuple[str, str], dict[str, Any]]) -> None:
    secret = one(manifests, "Secret")
    assert "data" not in secret
    for key, value in secret["stringData"].items():
        assert value in ("", "[]"), f"{key}: the committed Secret must hold placeholders only"


def test_kubernetes_configuration_is_read_by_payrelay(
    manifests: dict[tuple[str, str], dict[str, Any]], tmp_path: Path
) -> None:
    """The ConfigMap + Secret files, as a pod sees them, through service.settings: unconfigured
    (a clear refusal) as committed, and every gateway on once the Secret is filled in."""
    config = one(manifests, "ConfigMap")["data"]
    secret = one(manifests, "Secret")["stringData"]

    def environ(files: dict[str, str], plain: dict[str, str]) -> dict[str, str]:
        env = {**config, **plain}
        for key, value in files.items():
            (tmp_path / key).write_text(value, encoding="utf-8")
        for name, value in env.items():
            if value.startswith("/run/secrets/payrelay/"):
                env[name] = str(tmp_path / value.rpartition("/")[2])
        return env

    with pytest.raises(SettingsError, match="no API client"):
        Settings.from_env(environ(secret, {}))
    filled = {config[f"{name}_FILE"].rpartition("/")[2]: value for name, value in SAMPLE_SECRETS.items()}
    settings = Settings.from_env(environ({**secret, **filled}, SAMPLE_PLAIN))
    assert list(settings.gateways) == list(registry.GATEWAY_TYPES) and settings.cloudreve_key
    assert [len(c.keys) for c in settings.clients] == [2]
    assert len(settings.gateways["stripe-connect"].webhook_secrets) == 2
    assert settings.redis_url == config["PAYRELAY_REDIS_URL"]


def test_web_probes_and_draining(manifests: dict[tuple[str, str], dict[str, Any]]) -> None:
    web = deployment(manifests, "web")
    pod = web["spec"]["template"]["spec"]
    (container,) = containers(web)
    assert web["spec"]["replicas"] == 2
    assert container["args"][0] == "serve"
    assert container["ports"][0]["containerPort"] == 8000
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
        assert container[probe]["httpGet"]["port"] in ("http", 8000)
    sleep = container["lifecycle"]["preStop"]["exec"]["command"]
    assert sleep[0] == "sleep"
    # preStop sleep, then uvicorn's graceful shutdown (payrelay serve: 20 s), within the grace period
    assert pod["terminationGracePeriodSeconds"] >= int(sleep[1]) + 20
    assert web["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    assert container["resources"]["requests"]["cpu"]  # the HPA's CPU utilisation needs it


def test_worker_runs_payrelay_worker(manifests: dict[tuple[str, str], dict[str, Any]]) -> None:
    (container,) = containers(deployment(manifests, "worker"))
    assert container["args"] == ["worker"]
    assert "ports" not in container and "livenessProbe" not in container  # it serves no HTTP
    assert container["resources"]["requests"]


@pytest.mark.parametrize("component", ["web", "worker"])
def test_pods_run_as_non_root_with_a_read_only_root(
    manifests: dict[tuple[str, str], dict[str, Any]], component: str
) -> None:
    doc = deployment(manifests, component)
    pod = doc["spec"]["template"]["spec"]
    (container,) = containers(doc)
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] != 0
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert container["securityContext"]["capabilities"]["drop"] == ["ALL"]
    assert any(m["mountPath"] == "/tmp" for m in container["volumeMounts"])
    assert container["image"] == "registry.example.com/payrelay:0.1.0"  # the kustomize images entry
    assert pod["automountServiceAccountToken"] is False


def test_service_hpa_and_pdb_point_at_the_web_pods(manifests: dict[tuple[str, str], dict[str, Any]]) -> None:
    web = deployment(manifests, "web")
    pod_labels = web["spec"]["template"]["metadata"]["labels"]
    service = one(manifests, "Service")
    assert service["spec"]["selector"].items() <= pod_labels.items()
    (container,) = containers(web)
    assert service["spec"]["ports"][0]["targetPort"] in {p["name"] for p in container["ports"]}
    pdb = one(manifests, "PodDisruptionBudget")
    assert pdb["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
    assert pdb["spec"]["minAvailable"] < web["spec"]["replicas"]
    hpa = one(manifests, "HorizontalPodAutoscaler")
    assert hpa["spec"]["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": web["metadata"]["name"],
    }
    assert hpa["spec"]["minReplicas"] >= 2
    assert hpa["spec"]["metrics"][0]["resource"]["name"] == "cpu"
    worker = deployment(manifests, "worker")
    assert not service["spec"]["selector"].items() <= worker["spec"]["template"]["metadata"]["labels"].items()


def test_optional_redis_runs_with_aof() -> None:
    docs = by_kind_and_name(render(K8S / "redis"))
    conf = docs[("ConfigMap", "payrelay-redis-config")]["data"]["redis.conf"]
    assert re.search(r"^appendonly yes$", conf, re.M)
    assert re.search(r"^appendfsync (everysec|always)$", conf, re.M)
    assert re.search(rf"^hash-max-listpack-value {LISTPACK_VALUE}$", conf, re.M)
    statefulset = docs[("StatefulSet", "payrelay-redis")]
    assert statefulset["spec"]["volumeClaimTemplates"]
    assert docs[("Service", "payrelay-redis")]
    config = by_kind_and_name(render(K8S))[("ConfigMap", "payrelay-config")]["data"]
    assert config["PAYRELAY_REDIS_URL"].startswith("redis://payrelay-redis:6379")


# --- Dockerfile ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def dockerfile() -> list[tuple[str, str]]:
    return parse_dockerfile(ROOT / "Dockerfile")


@pytest.fixture(scope="module")
def image(dockerfile: list[tuple[str, str]]) -> ImageFacts:
    return image_facts(dockerfile)


def option(args: list[str], name: str) -> str:
    assert name in args, f"{args} has no {name}"
    return args[args.index(name) + 1]


def test_dockerfile_base_image_is_pinned_and_multi_stage(dockerfile: list[tuple[str, str]]) -> None:
    args = dict(arg.split("=", 1) for arg in instructions(dockerfile, "ARG") if "=" in arg)
    froms = [re.sub(r"\$\{(\w+)\}", lambda m: args[m.group(1)], f) for f in instructions(dockerfile, "FROM")]
    assert len(froms) >= 2, "multi-stage: build, then a clean runtime image"
    for image in froms:
        assert re.match(r"python:3\.11\.\d+-slim-bookworm(@sha256:[0-9a-f]{64})?( AS \w+)?$", image, re.I), image


def test_dockerfile_runs_as_a_numeric_non_root_user(dockerfile: list[tuple[str, str]]) -> None:
    users = instructions(dockerfile, "USER")
    assert users, "no USER"
    uid = users[-1].split(":")[0]
    assert uid.isdigit() and int(uid) != 0  # numeric, so Kubernetes' runAsNonRoot can verify it
    pod = render(K8S)
    web = next(doc for doc in pod if doc["kind"] == "Deployment")
    assert web["spec"]["template"]["spec"]["securityContext"]["runAsUser"] == int(uid)


def test_dockerfile_entrypoint_healthcheck_and_port(dockerfile: list[tuple[str, str]]) -> None:
    assert json.loads(instructions(dockerfile, "ENTRYPOINT")[-1]) == ["payrelay"]
    assert json.loads(instructions(dockerfile, "CMD")[-1]) == ["serve", "--host", "0.0.0.0", "--port", "8000"]
    assert "8000" in instructions(dockerfile, "EXPOSE")[-1].split()
    (healthcheck,) = instructions(dockerfile, "HEALTHCHECK")
    assert "urllib" in healthcheck and "http://127.0.0.1:8000/healthz" in healthcheck
    assert "curl" not in healthcheck and "wget" not in healthcheck  # neither is in slim images
    assert any("pip install --no-cache-dir ." in run for run in instructions(dockerfile, "RUN"))


def test_dockerfile_healthcheck_command_runs(dockerfile: list[tuple[str, str]]) -> None:
    """The HEALTHCHECK's Python is valid and fails (non-zero) when nothing listens."""
    (healthcheck,) = instructions(dockerfile, "HEALTHCHECK")
    command = json.loads(healthcheck.split("CMD", 1)[1])
    assert command[:2] == ["python", "-c"]
    compile(command[2], "HEALTHCHECK", "exec")


def test_dockerfile_copies_what_the_package_needs(dockerfile: list[tuple[str, str]]) -> None:
    copied = set()
    for args in instructions(dockerfile, "COPY"):
        if not args.startswith("--from"):
            copied.update(Path(part).parts[0] for part in args.split()[:-1])
    pyproject = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    packages = re.search(r"^include = \[(.*)\]", pyproject, re.M)  # [tool.setuptools.packages.find]
    assert packages
    top_level = {name.strip(' "*') for name in packages.group(1).split(",")}
    readme = re.search(r'^readme = "(.+)"', pyproject, re.M)
    assert top_level | {"pyproject.toml", readme.group(1) if readme else "pyproject.toml"} <= copied
    ignored = {
        line.strip()
        for line in (ROOT / ".dockerignore").read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.startswith("#")
    }
    assert not ignored & copied, "the .dockerignore drops a file the Dockerfile copies"
    assert {".venv", ".git", ".payrelay-demo"} <= ignored


# --- Compose -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    (doc,) = load_yaml(DEPLOY / "compose.yaml")
    return doc


def command(service: dict[str, Any]) -> list[str]:
    value = service.get("command", [])
    return value.split() if isinstance(value, str) else [str(part) for part in value]


def test_compose_redis_is_durable(compose: dict[str, Any]) -> None:
    redis = compose["services"]["redis"]
    assert re.match(r"redis:7(\.\d+)*(-[\w.]+)?$", redis["image"])
    args = command(redis)
    assert args[args.index("--appendonly") + 1] == "yes"
    assert args[args.index("--appendfsync") + 1] in ("everysec", "always")
    assert args[args.index("--hash-max-listpack-value") + 1] == str(LISTPACK_VALUE)
    (volume,) = redis["volumes"]
    name, _, target = volume.partition(":")
    assert target == "/data" and name in compose["volumes"]


def test_compose_web_replicas_and_worker(compose: dict[str, Any]) -> None:
    services = compose["services"]
    web = [s for s in services.values() if command(s)[:1] == ["serve"]]
    assert sum(s.get("deploy", {}).get("replicas", 1) for s in web) >= 2
    for service in web:
        assert "ports" not in service, "web replicas sit behind the load balancer"
    workers = [s for s in services.values() if command(s) == ["worker"]]
    assert len(workers) == 1
    assert workers[0]["healthcheck"] == {"disable": True}
    for service in [*web, *workers]:
        assert service["env_file"] == "payrelay.env"
        assert service["depends_on"]["redis"]["condition"] == "service_healthy"
        assert service["read_only"] is True


def test_compose_nginx_balances_the_web_replicas(compose: dict[str, Any]) -> None:
    nginx = compose["services"]["nginx"]
    (mount,) = nginx["volumes"]
    conf = (DEPLOY / mount.split(":")[0]).read_text(encoding="utf-8")
    assert re.search(r"server web:8000\b", conf)
    assert "proxy_pass http://payrelay_web;" in conf
    assert nginx["ports"]


def test_compose_secrets_and_env_example_agree(compose: dict[str, Any]) -> None:
    env = read_env_file(DEPLOY / "payrelay.env.example")
    declared = compose["secrets"]
    for name in ("web", "worker"):
        assert set(compose["services"][name]["secrets"]) == set(declared)
    targets = {f"/run/secrets/{name}": spec["file"] for name, spec in declared.items()}
    file_variables = {name: value for name, value in env.items() if name.endswith("_FILE")}
    file_variables["PAYRELAY_CLIENTS_FILE"] = env["PAYRELAY_CLIENTS_FILE"]
    assert set(file_variables.values()) == set(targets), "every secret file is read, every read file mounted"
    for source in targets.values():
        example = DEPLOY / "secrets.example" / Path(source).name
        assert Path(source).parent == Path("secrets") and example.is_file(), f"no {example}"


def test_env_example_names_every_design_variable() -> None:
    env = read_env_file(DEPLOY / "payrelay.env.example")
    for name in PLAIN_VARIABLES:
        assert name in env, f"{name} is not in deploy/payrelay.env.example"
    for name in SECRET_VARIABLES:
        assert not env.get(name), f"{name}: secrets go in files, via {name}_FILE"
        assert env.get(f"{name}_FILE", "").startswith("/run/secrets/"), f"{name}_FILE is not set"
    assert env["PAYRELAY_REDIS_URL"].startswith("redis://redis:6379")


def test_compose_configuration_is_read_by_payrelay(compose: dict[str, Any], tmp_path: Path) -> None:
    env = read_env_file(DEPLOY / "payrelay.env.example")
    secrets = {f"/run/secrets/{name}": Path(spec["file"]).name for name, spec in compose["secrets"].items()}

    def environ(files: dict[str, str], plain: dict[str, str]) -> dict[str, str]:
        for name in secrets.values():
            shutil.copy(DEPLOY / "secrets.example" / name, tmp_path / name)
        for name, value in files.items():
            (tmp_path / name).write_text(value, encoding="utf-8")
        return {k: str(tmp_path / secrets[v]) if v in secrets else v for k, v in {**env, **plain}.items()}

    with pytest.raises(SettingsError, match="no API client"):
        Settings.from_env(environ({}, {}))
    filled = {secrets[env[f"{name}_FILE"]]: value for name, value in SAMPLE_SECRETS.items()}
    settings = Settings.from_env(environ(filled, SAMPLE_PLAIN))
    assert list(settings.gateways) == list(registry.GATEWAY_TYPES) and settings.cloudreve_key


def test_no_real_secrets_are_committed() -> None:
    local = {DEPLOY / "secrets", DEPLOY / "payrelay.env"}  # an operator's real files, git-ignored
    for path in [*DEPLOY.rglob("*"), ROOT / "Dockerfile"]:
        if path.is_file() and not local & {path, *path.parents}:
            text = path.read_text(encoding="utf-8")
            assert not REAL_SECRET.search(text), f"{path} holds something that looks like a real secret"
    for path in (DEPLOY / "secrets.example").iterdir():
        assert path.read_text(encoding="utf-8").strip() in ("", "[]"), f"{path}: placeholders only"


def test_docker_compose_config(tmp_path: Path) -> None:
    """`docker compose config` where the compose plugin is installed (no engine needed)."""
    docker = shutil.which("docker")
    if (
        docker is None
        or subprocess.run([docker, "compose", "version"], capture_output=True, timeout=30, check=False).returncode != 0
    ):
        pytest.skip("docker compose is not installed")
    workdir = tmp_path / "deploy"
    shutil.copytree(DEPLOY, workdir)
    shutil.copy(workdir / "payrelay.env.example", workdir / "payrelay.env")
    shutil.copytree(workdir / "secrets.example", workdir / "secrets")
    result = subprocess.run(
        [docker, "compose", "-f", str(workdir / "compose.yaml"), "config", "--quiet"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr


# --- the deployments against what the image offers -----------------------------------------------


def read_variables() -> frozenset[str]:
    """Every environment variable name payrelay's code reads (service/ and each gateway's
    config; a name not among them, set in a
    deployment, is a typo that silently does nothing); each of them may also come as NAME_FILE."""
    names = set()
    for path in [*(ROOT / "service").glob("*.py"), *(ROOT / "adapters").rglob("config.py")]:
        names |= set(re.findall(r'"((?:PAYRELAY|FORWARDED)_[A-Z0-9_]+)"', path.read_text(encoding="utf-8")))
    assert set(DESIGN_VARIABLES) <= names, f"not read by payrelay: {sorted(set(DESIGN_VARIABLES) - names)}"
    return frozenset(names | {f"{name}_FILE" for name in names if not name.endswith("_FILE")})


def test_every_deployed_variable_is_one_payrelay_reads(
    manifests: dict[tuple[str, str], dict[str, Any]], compose: dict[str, Any]
) -> None:
    known = read_variables()
    deployed = {
        "deploy/k8s/configmap.yaml": set(one(manifests, "ConfigMap")["data"]),
        "deploy/payrelay.env.example": set(read_env_file(DEPLOY / "payrelay.env.example")),
    }
    for component in ("web", "worker"):
        (container,) = containers(deployment(manifests, component))
        deployed[f"deploy/k8s {component}"] = {item["name"] for item in container.get("env", [])}
    for name, service in compose["services"].items():
        if "env_file" in service:
            deployed[f"deploy/compose.yaml {name}"] = set(service.get("environment", {}))
    for where, names in deployed.items():
        assert names <= known, f"{where}: payrelay reads no {sorted(names - known)}"


def test_kubernetes_runs_what_the_image_offers(
    manifests: dict[tuple[str, str], dict[str, Any]], image: ImageFacts
) -> None:
    for component in ("web", "worker"):
        doc = deployment(manifests, component)
        pod = doc["spec"]["template"]["spec"]
        (container,) = containers(doc)
        assert "command" not in container, "the image's ENTRYPOINT (payrelay) stays"
        context = pod["securityContext"]
        assert (context["runAsUser"], context["runAsGroup"], context["fsGroup"]) == (image.uid, image.gid, image.gid)
        assert container["securityContext"]["readOnlyRootFilesystem"] is True
        volumes = {v["name"]: v for v in pod["volumes"]}
        scratch = [m for m in container["volumeMounts"] if m["mountPath"] == image.workdir]
        assert scratch and "emptyDir" in volumes[scratch[0]["name"]], f"{component}: {image.workdir} is not writable"
    web = deployment(manifests, "web")
    (container,) = containers(web)
    args = container["args"]
    assert args[0] == image.cmd[0] and int(option(args, "--port")) == image.port
    assert option(args, "--host") == "0.0.0.0"  # reachable from outside the pod
    ports = {port["name"]: port["containerPort"] for port in container["ports"]}
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        port = container[probe]["httpGet"]["port"]
        assert ports.get(port, port) == image.port, probe
    assert container["livenessProbe"]["httpGet"]["path"] == image.health_path  # what the HEALTHCHECK asks
    assert int(web["spec"]["template"]["metadata"]["annotations"]["prometheus.io/port"]) == image.port
    (target,) = [p["targetPort"] for p in one(manifests, "Service")["spec"]["ports"]]
    assert ports.get(target, target) == image.port


def test_compose_runs_what_the_image_offers(compose: dict[str, Any], image: ImageFacts) -> None:
    services = compose["services"]
    for name in ("web", "worker"):
        service = services[name]
        assert "entrypoint" not in service, "the image's ENTRYPOINT (payrelay) stays"
        assert service.get("user", f"{image.uid}:{image.gid}") == f"{image.uid}:{image.gid}"
        assert service["read_only"] is True and image.workdir in service["tmpfs"]
    web = command(services["web"])
    assert web[0] == image.cmd[0] and int(option(web, "--port")) == image.port
    assert option(web, "--host") == "0.0.0.0"
    assert [str(port) for port in services["web"]["expose"]] == [str(image.port)]
    assert "healthcheck" not in services["web"], "the web replicas keep the image's HEALTHCHECK"
    (mount,) = services["nginx"]["volumes"]
    conf = (DEPLOY / mount.split(":")[0]).read_text(encoding="utf-8")
    assert re.findall(r"server web:(\d+)", conf) == [str(image.port)]


# --- docs ----------------------------------------------------------------------------------------


def test_documented_metrics_exist() -> None:
    """Every payrelay_* metric the deploy docs name is one service/metrics.py exports."""
    source = (ROOT / "service" / "metrics.py").read_text(encoding="utf-8")
    exported = set()
    for name in re.findall(r'"(payrelay_\w+)"', source):
        base = name.removesuffix("_total")
        exported |= {name, base, f"{base}_total", f"{base}_bucket", f"{base}_count", f"{base}_sum"}
    readme = (DEPLOY / "README.md").read_text(encoding="utf-8")
    section = re.search(r"^## Metrics.*?(?=^## )", readme, re.M | re.S)
    assert section, "deploy/README.md has no '## Metrics' section"
    named = set(re.findall(r"\bpayrelay_[a-z_]+[a-z]\b", section.group()))
    assert named, "the deploy README names no metric"
    assert named <= exported, f"not exported by service/metrics.py: {sorted(named - exported)}"
