//! `deploy/kubernetes`, checked offline (no cluster): every manifest the
//! kustomizations list against the Kubernetes API schemas, the ConfigMap's
//! `infergate.toml` through `infergate check` with the Deployment's
//! environment, the PrometheusRule against `ops/prometheus`'s rules, the
//! drain timing against the config, the folder against its
//! kustomization.yaml, and the Dockerfile the Deployment's image comes from.
//!
//! YAML is read by `tests/kubernetes/validate.py` (which also runs the
//! schema checks), so no YAML crate is needed. Its Python must import
//! kubernetes-validate (pinned in `tests/kubernetes/requirements.txt`):
//! `$INFERGATE_K8S_PYTHON` (scripts/test makes a venv and sets it), else a
//! `python3` on PATH that imports it. Without one the tests fail, saying
//! how to get it: they never pass unchecked.

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};
    use std::path::{Path, PathBuf};
    use std::process::{Command, Output};
    use std::sync::OnceLock;
    use std::time::Duration;

    use serde_json::Value;

    const BIN: &str = env!("CARGO_BIN_EXE_infergate");
    const ROOT: &str = env!("CARGO_MANIFEST_DIR");
    /// The oldest Kubernetes minor the manifests are held to, and the newest
    /// the pinned kubernetes-validate ships schemas for.
    const KUBERNETES_VERSIONS: [&str; 2] = ["1.31", "1.37"];
    /// In the folder on purpose, kept out of every kustomization: an example
    /// of the Secret that must never be applied with its placeholder values.
    const NOT_LISTED: [&str; 1] = ["secret.example.yaml"];

    fn root() -> &'static Path {
        Path::new(ROOT)
    }

    fn deploy() -> PathBuf {
        root().join("deploy/kubernetes")
    }

    fn helper() -> PathBuf {
        root().join("tests/kubernetes/validate.py")
    }

    /// `kubernetes-validate==X` from the requirements file, for messages.
    fn pinned() -> String {
        let req = root().join("tests/kubernetes/requirements.txt");
        let text = std::fs::read_to_string(&req).unwrap();
        text.lines()
            .find(|l| l.starts_with("kubernetes-validate=="))
            .unwrap_or_else(|| panic!("{}: no kubernetes-validate== pin", req.display()))
            .trim()
            .to_string()
    }

    fn imports_validator(python: &Path) -> bool {
        Command::new(python)
            .args(["-c", "import kubernetes_validate, yaml, jsonschema"])
            .output()
            .is_ok_and(|out| out.status.success())
    }

    /// The Python that runs the helper, found once.
    fn python() -> &'static Path {
        static PYTHON: OnceLock<PathBuf> = OnceLock::new();
        PYTHON.get_or_init(|| {
            let how = format!(
                "run scripts/test, which installs it, or pip install {} \
                 (all pins: tests/kubernetes/requirements.txt) and set \
                 INFERGATE_K8S_PYTHON to that Python",
                pinned()
            );
            if let Some(python) = std::env::var_os("INFERGATE_K8S_PYTHON") {
                let python = PathBuf::from(python);
                assert!(
                    imports_validator(&python),
                    "INFERGATE_K8S_PYTHON={} cannot import kubernetes_validate: {how}",
                    python.display()
                );
                return python;
            }
            let python = PathBuf::from("python3");
            assert!(
                imports_validator(&python),
                "the Kubernetes manifests need kubernetes-validate to be checked, and \
                 INFERGATE_K8S_PYTHON is unset and python3 on PATH cannot import it: {how}"
            );
            python
        })
    }

    fn run_helper(args: &[&str]) -> Output {
        Command::new(python())
            .arg(helper())
            .args(args)
            .output()
            .unwrap()
    }

    /// The YAML documents of a file, as JSON.
    fn yaml(path: &Path) -> Vec<Value> {
        let out = run_helper(&["to-json", path.to_str().unwrap()]);
        assert!(
            out.status.success(),
            "reading {}: {}",
            path.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        let docs: Value = serde_json::from_slice(&out.stdout).unwrap();
        docs.as_array().unwrap().clone()
    }

    /// The one document of `kind` in a file.
    fn resource(file: &str, kind: &str) -> Value {
        let path = deploy().join(file);
        let mut found = yaml(&path).into_iter().filter(|d| d["kind"] == kind);
        let doc = found
            .next()
            .unwrap_or_else(|| panic!("{}: no {kind}", path.display()));
        assert!(found.next().is_none(), "{}: two {kind}s", path.display());
        doc
    }

    fn gateway_container(deployment: &Value) -> &Value {
        deployment["spec"]["template"]["spec"]["containers"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == "infergate")
            .expect("the Deployment has a container named infergate")
    }

    /// `resources` of a folder's kustomization.yaml: files, and folders
    /// holding a kustomization of their own.
    fn listed(dir: &Path) -> Vec<String> {
        let docs = yaml(&dir.join("kustomization.yaml"));
        assert_eq!(docs.len(), 1, "{}/kustomization.yaml", dir.display());
        docs[0]["resources"]
            .as_array()
            .unwrap_or_else(|| panic!("{}/kustomization.yaml: no resources", dir.display()))
            .iter()
            .map(|r| r.as_str().unwrap().to_string())
            .collect()
    }

    /// Every manifest file the kustomization of `dir` applies, through the
    /// folders it lists.
    fn applied_files(dir: &Path) -> Vec<PathBuf> {
        let mut files = Vec::new();
        for entry in listed(dir) {
            let path = dir.join(&entry);
            if path.is_dir() {
                files.extend(applied_files(&path));
            } else {
                assert!(path.is_file(), "{}: listed, missing", path.display());
                files.push(path);
            }
        }
        files
    }

    /// The ConfigMap's `infergate.toml`.
    fn config_text() -> String {
        let cm = resource("configmap.yaml", "ConfigMap");
        cm["data"]["infergate.toml"]
            .as_str()
            .expect("the ConfigMap has an infergate.toml")
            .to_string()
    }

    fn config() -> toml::Table {
        config_text().parse().unwrap()
    }

    fn server_duration(config: &toml::Table, key: &str) -> Duration {
        let value = config["server"]
            .get(key)
            .and_then(|v| v.as_str())
            .unwrap_or_else(|| {
                panic!("the ConfigMap's infergate.toml sets no server.{key}: set it, so the pod's timing can be checked against it")
            });
        humantime::parse_duration(value).unwrap()
    }

    /// The environment the gateway gets in its pod: the Deployment's plain
    /// values, a stand-in for each value from a Secret, and what the kubelet
    /// sets for every pod.
    fn pod_environment() -> BTreeMap<String, String> {
        let deployment = resource("deployment.yaml", "Deployment");
        let mut env = BTreeMap::from([
            (
                "KUBERNETES_SERVICE_HOST".to_string(),
                "10.96.0.1".to_string(),
            ),
            ("KUBERNETES_SERVICE_PORT".to_string(), "443".to_string()),
        ]);
        for var in gateway_container(&deployment)["env"].as_array().unwrap() {
            let name = var["name"].as_str().unwrap().to_string();
            let value = if let Some(v) = var["value"].as_str() {
                v.to_string()
            } else if let Some(key) = var["valueFrom"]["secretKeyRef"]["key"].as_str() {
                format!("stand-in-for-{key}-0123456789")
            } else {
                panic!("env {name}: neither a value nor a secretKeyRef");
            };
            env.insert(name, value);
        }
        env
    }

    /// A file of its own, removed when the test ends.
    struct TempFile(PathBuf);

    impl TempFile {
        fn new(name: &str, contents: &str) -> Self {
            let path = std::env::temp_dir().join(format!(
                "infergate-kubernetes-{}-{}-{name}",
                std::process::id(),
                fastrand::u64(..)
            ));
            std::fs::write(&path, contents).unwrap();
            TempFile(path)
        }
    }

    impl Drop for TempFile {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
        }
    }

    // === the tests ===

    #[test]
    fn every_manifest_passes_the_kubernetes_api_schemas() {
        let mut files = applied_files(&deploy());
        files.extend(NOT_LISTED.iter().map(|f| deploy().join(f)));
        let mut args = vec!["schemas".to_string()];
        for v in KUBERNETES_VERSIONS {
            args.extend(["-k".to_string(), v.to_string()]);
        }
        args.extend(files.iter().map(|f| f.to_str().unwrap().to_string()));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = run_helper(&args);
        let stdout = String::from_utf8_lossy(&out.stdout);
        println!("{stdout}");
        assert!(
            out.status.success(),
            "schema validation failed:\n{stdout}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        // Each file was read and checked, not skipped.
        for file in &files {
            let shown = file.to_str().unwrap();
            assert!(
                stdout
                    .lines()
                    .any(|l| l.starts_with(&format!("ok {shown} "))),
                "{shown} was not checked:\n{stdout}"
            );
        }
    }

    #[test]
    fn the_configmaps_config_passes_infergate_check_with_the_pods_environment() {
        let file = TempFile::new("infergate.toml", &config_text());
        let out = Command::new(BIN)
            .args(["check", "--config", file.0.to_str().unwrap()])
            .env_clear()
            .envs(pod_environment())
            .output()
            .unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        println!("{text}");
        assert!(
            out.status.success(),
            "infergate check refused deploy/kubernetes/configmap.yaml's infergate.toml:\n{text}"
        );
    }

    #[test]
    fn the_prometheus_rule_holds_the_ops_alerting_rules() {
        let ops = yaml(&root().join("ops/prometheus/infergate-alerts.yml"));
        assert_eq!(ops.len(), 1);
        let rule = resource("prometheusrule.yaml", "PrometheusRule");
        assert!(ops[0]["groups"].as_array().is_some_and(|g| !g.is_empty()));
        assert!(
            rule["spec"]["groups"] == ops[0]["groups"],
            "deploy/kubernetes/prometheusrule.yaml's groups differ from \
             ops/prometheus/infergate-alerts.yml's; rebuild it with\n  \
             python3 tests/kubernetes/validate.py prometheusrule \
             ops/prometheus/infergate-alerts.yml > deploy/kubernetes/prometheusrule.yaml"
        );
    }

    #[test]
    fn the_pod_outlasts_the_drain_and_readiness_sees_the_delay() {
        let config = config();
        let delay = server_duration(&config, "shutdown_delay");
        let grace = server_duration(&config, "shutdown_grace");
        let deployment = resource("deployment.yaml", "Deployment");
        let pod = &deployment["spec"]["template"]["spec"];
        let termination =
            Duration::from_secs(pod["terminationGracePeriodSeconds"].as_u64().unwrap());
        assert!(
            termination > delay + grace,
            "terminationGracePeriodSeconds {termination:?} must be above shutdown_delay {delay:?} \
             + shutdown_grace {grace:?}, or the kubelet kills the pod mid-drain"
        );
        // Readiness must fail within the delay, while the gateway still
        // accepts: period × failureThreshold, the slowest it notices.
        let probe = &gateway_container(&deployment)["readinessProbe"];
        assert_eq!(probe["httpGet"]["path"], "/readyz");
        let period = probe["periodSeconds"].as_u64().unwrap_or(10);
        let failures = probe["failureThreshold"].as_u64().unwrap_or(3);
        assert!(
            Duration::from_secs(period * failures) < delay,
            "readiness notices /readyz's 503 only after {period}s × {failures}, \
             not within shutdown_delay {delay:?}"
        );
        let liveness = &gateway_container(&deployment)["livenessProbe"];
        assert_eq!(liveness["httpGet"]["path"], "/healthz");
    }

    #[test]
    fn every_file_in_the_folder_is_in_its_kustomization() {
        fn check(dir: &Path, not_listed: &[&str]) {
            let listed: BTreeSet<String> = listed(dir).into_iter().collect();
            let mut present = BTreeSet::new();
            for entry in std::fs::read_dir(dir).unwrap() {
                let name = entry.unwrap().file_name().into_string().unwrap();
                if name == "kustomization.yaml" || not_listed.contains(&name.as_str()) {
                    continue;
                }
                assert!(
                    listed.contains(&name),
                    "{}/{name} is in the folder but not in its kustomization.yaml's resources",
                    dir.display()
                );
                if dir.join(&name).is_dir() {
                    check(&dir.join(&name), &[]);
                }
                present.insert(name);
            }
            let missing: Vec<_> = listed.difference(&present).collect();
            assert!(
                missing.is_empty(),
                "{}/kustomization.yaml lists what is not there: {missing:?}",
                dir.display()
            );
        }
        check(&deploy(), &NOT_LISTED);
        // The example Secret stays out, and names what the Deployment reads.
        assert!(!listed(&deploy())
            .iter()
            .any(|r| NOT_LISTED.contains(&r.as_str())));
        let secret = resource("secret.example.yaml", "Secret");
        let deployment = resource("deployment.yaml", "Deployment");
        for var in gateway_container(&deployment)["env"].as_array().unwrap() {
            let reference = &var["valueFrom"]["secretKeyRef"];
            if let Some(key) = reference["key"].as_str() {
                assert_eq!(reference["name"], secret["metadata"]["name"]);
                assert!(
                    secret["stringData"].get(key).is_some(),
                    "secret.example.yaml has no {key}, which env {} reads",
                    var["name"]
                );
            }
        }
    }

    #[test]
    fn the_config_is_mounted_as_a_directory_and_served_on_the_declared_ports() {
        let deployment = resource("deployment.yaml", "Deployment");
        let pod = &deployment["spec"]["template"]["spec"];
        let container = gateway_container(&deployment);
        let cm = resource("configmap.yaml", "ConfigMap");
        let volume = pod["volumes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|v| v["configMap"]["name"] == cm["metadata"]["name"])
            .expect("a volume of the ConfigMap");
        let mount = container["volumeMounts"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["name"] == volume["name"])
            .expect("the ConfigMap's volume is mounted");
        // A subPath mount never sees the ConfigMap's updates.
        assert!(mount.get("subPath").is_none(), "{mount}");
        assert!(mount.get("subPathExpr").is_none(), "{mount}");
        let env = pod_environment();
        assert_eq!(
            env["INFERGATE_CONFIG"],
            format!("{}/infergate.toml", mount["mountPath"].as_str().unwrap())
        );

        // The ports the config listens on are the container's and the
        // Services' target ports.
        let config = config();
        let port_of = |key: &str| -> u64 {
            let addr: std::net::SocketAddr =
                config["server"][key].as_str().unwrap().parse().unwrap();
            assert!(
                addr.ip().is_unspecified(),
                "server.{key} {addr}: the kubelet and Services reach the pod's IP"
            );
            u64::from(addr.port())
        };
        let container_port = |name: &str| -> u64 {
            container["ports"]
                .as_array()
                .unwrap()
                .iter()
                .find(|p| p["name"] == name)
                .unwrap_or_else(|| panic!("no container port {name}"))["containerPort"]
                .as_u64()
                .unwrap()
        };
        assert_eq!(container_port("http"), port_of("listen"));
        assert_eq!(container_port("admin"), port_of("admin_listen"));
        for service in yaml(&deploy().join("service.yaml")) {
            for port in service["spec"]["ports"].as_array().unwrap() {
                let target = port["targetPort"].as_str().unwrap();
                assert!(["http", "admin"].contains(&target), "{port}");
            }
        }
    }

    #[test]
    fn the_dockerfile_labels_the_image_and_runs_as_the_pods_user() {
        let dockerfile = std::fs::read_to_string(root().join("Dockerfile")).unwrap();
        // The runtime stage: from its FROM on.
        let runtime = &dockerfile[dockerfile.rfind("\nFROM ").unwrap()..];
        let has = |line: &str| runtime.lines().any(|l| l.trim() == line);
        assert!(runtime.contains("gcr.io/distroless/cc-debian12:nonroot"));
        assert!(has("USER nonroot:nonroot"));
        assert!(has("STOPSIGNAL SIGTERM"));
        assert!(
            has(&format!("ARG VERSION={}", env!("CARGO_PKG_VERSION"))),
            "the Dockerfile's ARG VERSION default is not Cargo.toml's version"
        );
        assert!(runtime.contains(&format!(
            "org.opencontainers.image.licenses=\"{}\"",
            env!("CARGO_PKG_LICENSE")
        )));
        assert!(runtime.contains("org.opencontainers.image.version=\"${VERSION}\""));
        // distroless's nonroot is uid and gid 65532.
        let deployment = resource("deployment.yaml", "Deployment");
        let security = &deployment["spec"]["template"]["spec"]["securityContext"];
        assert_eq!(security["runAsUser"], 65532);
        assert_eq!(security["runAsNonRoot"], true);
        let container = &gateway_container(&deployment)["securityContext"];
        assert_eq!(container["readOnlyRootFilesystem"], true);
        assert_eq!(container["allowPrivilegeEscalation"], false);
        assert_eq!(
            container["capabilities"]["drop"],
            serde_json::json!(["ALL"])
        );
    }
}
