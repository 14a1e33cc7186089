//! What `deploy/` ships is checked: the linters this machine has (`deploy/lint.sh`: systemd units with
//! systemd-analyze, YAML and JSON, Kubernetes schemas, the Dockerfile's rules), and the example
//! configuration files load with the settings code they document.

mod common;

use std::path::Path;

fn deploy(file: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy").join(file)
}

#[test]
fn the_deploy_files_pass_the_linters_available_here() {
    let out = std::process::Command::new("bash")
        .arg(deploy("lint.sh"))
        .env("HONUA_BIN", env!("CARGO_BIN_EXE_honua"))
        .output()
        .unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(text.contains("ok    deploy/kubernetes/honua-gitops.yaml"), "{text}");
    println!("{text}");
}

#[test]
fn the_example_agent_and_gitops_files_load_as_documented() {
    // The token and the admin password live in agent.env, as the file says.
    let args = honua_gitops::agent::settings::AgentArgs {
        token: Some("honua_example".into()),
        admin_password: Some("from-agent-env".into()),
        ..Default::default()
    };
    let agent = args.resolve(Some(&deploy("examples/agent.yaml"))).unwrap();
    assert_eq!(agent.environment, "production");
    assert_eq!(agent.restart_command.as_deref(), Some("systemctl restart honua"));
    assert_eq!(agent.reload_url, "http://127.0.0.1:5000/v1/admin/metadata/reload");
    assert_eq!(agent.snapshot_url.as_deref(), Some("http://127.0.0.1:5000/v1/admin/metadata/snapshots"));
    assert!(matches!(agent.admin, honua_gitops::agent::AdminAuth::Login { ref user, .. } if user == "honua-agent"));
    assert_eq!(agent.keep_releases, 5);
    assert!(agent.git_only.is_none());

    let honua = honua_gitops::agent::settings::AgentArgs::default();
    let git_only = honua.resolve(Some(&deploy("examples/honua-server-gitops.yaml"))).unwrap();
    assert_eq!(git_only.git_only.unwrap().branch, "main");
    assert_eq!(git_only.target_dir, deploy("examples"), "Honua's config directory is the file's");
}

#[test]
fn the_example_server_file_loads_and_names_what_is_missing() {
    let err =
        honua_gitops::server::settings::Settings::resolve(Default::default(), Some(&deploy("examples/server.yaml")))
            .unwrap_err()
            .to_string();
    // Everything in the file parses; what stops it is the App key this machine does not have.
    assert!(err.contains("/etc/honua/app-key.pem") || err.contains("WEBHOOK_SECRET"), "{err}");
}

/// A stand-in of a release as the release workflow publishes it (`<base>/download/<tag>/` with the archive
/// for this machine and SHA256SUMS), holding this build's binaries. Returns the archive's name.
fn stand_in_release(base: &Path, tag: &str) -> String {
    let archive = format!("honua-{}-unknown-linux-musl.tar.gz", std::env::consts::ARCH);
    let stage = tempfile::tempdir().unwrap();
    std::fs::copy(env!("CARGO_BIN_EXE_honua"), stage.path().join("honua")).unwrap();
    std::fs::copy(env!("CARGO_BIN_EXE_honua-agent"), stage.path().join("honua-agent")).unwrap();
    let dir = base.join("download").join(tag);
    std::fs::create_dir_all(&dir).unwrap();
    let run = |program: &str, args: &[&str], cwd: &Path| {
        let out = std::process::Command::new(program).args(args).current_dir(cwd).output().unwrap();
        assert!(out.status.success(), "{program} {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        out.stdout
    };
    let target = dir.join(&archive);
    run("tar", &["-I", "gzip -1", "-cf", target.to_str().unwrap(), "honua", "honua-agent"], stage.path());
    let sums = run("sha256sum", &[&archive], &dir);
    std::fs::write(dir.join("SHA256SUMS"), sums).unwrap();
    archive
}

fn sh(script: &Path, env: &[(&str, String)]) -> (i32, String, String) {
    let out = std::process::Command::new("sh")
        .arg(script)
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .env("HOME", std::env::temp_dir())
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .output()
        .unwrap();
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    (out.status.code().unwrap_or(-1), text(&out.stdout), text(&out.stderr))
}

/// `install.sh` with nothing but curl, tar and sha256sum on the PATH: it installs working binaries from
/// a release, and installs nothing when the archive does not match its checksum.
#[test]
fn install_sh_installs_working_binaries_and_refuses_a_bad_checksum() {
    let release = tempfile::tempdir().unwrap();
    let archive = stand_in_release(release.path(), "v-test");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("install.sh");
    let into = tempfile::tempdir().unwrap();
    let base = format!("file://{}", release.path().display());
    let (code, _, err) = sh(
        &script,
        &[
            ("HONUA_INSTALL_BASE", base.clone()),
            ("HONUA_VERSION", "v-test".into()),
            ("HONUA_INSTALL_DIR", into.path().display().to_string()),
        ],
    );
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("installed honua") && err.contains("is not on your PATH"), "{err}");
    for bin in ["honua", "honua-agent"] {
        let out = std::process::Command::new(into.path().join(bin)).arg("--version").output().unwrap();
        assert!(out.status.success() && String::from_utf8_lossy(&out.stdout).contains(env!("CARGO_PKG_VERSION")));
    }

    // A tampered archive: refused, nothing installed.
    let bad = release.path().join("download/v-bad");
    std::fs::create_dir_all(&bad).unwrap();
    std::fs::copy(release.path().join("download/v-test").join(&archive), bad.join(&archive)).unwrap();
    std::fs::write(bad.join("SHA256SUMS"), format!("{}  {archive}\n", "0".repeat(64))).unwrap();
    let empty = tempfile::tempdir().unwrap();
    let (code, _, err) = sh(
        &script,
        &[
            ("HONUA_INSTALL_BASE", base),
            ("HONUA_VERSION", "v-bad".into()),
            ("HONUA_INSTALL_DIR", empty.path().display().to_string()),
        ],
    );
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("checksum mismatch") && err.contains("nothing installed"), "{err}");
    assert_eq!(std::fs::read_dir(empty.path()).unwrap().count(), 0);
}

/// The repository's GitHub Action, its steps run as a runner would (expressions filled in, `GITHUB_PATH`
/// honoured) on a depth-1 clone, installing from a stand-in release: no compiling, the plan in the job
/// summary, and the job failed after it for the example PR's breaking change.
#[test]
fn the_action_validates_and_plans_a_depth_one_clone_from_a_release() {
    let release = tempfile::tempdir().unwrap();
    stand_in_release(release.path(), "v-test");
    let (_origin, work, ci) = common::ci_clone();
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let action = honua_gitops::settings::read_file(&root.join("action.yml")).unwrap();
    let temp = work.path().join("runner-temp");
    let (github_path, summary) = (work.path().join("github_path"), work.path().join("summary.md"));
    std::fs::write(&github_path, "").unwrap();
    let fill = |text: &str| {
        text.replace("${{ inputs.version }}", "v-test")
            .replace("${{ inputs.path }}", ".")
            .replace("${{ inputs.base-ref }}", "main")
            .replace("${{ inputs.fail-on-breaking }}", "true")
            .replace("${{ runner.temp }}", temp.to_str().unwrap())
            .replace("${{ github.action_path }}", root.to_str().unwrap())
    };
    let mut outcomes = Vec::new();
    for step in action["runs"]["steps"].as_array().unwrap() {
        let added: Vec<String> =
            std::fs::read_to_string(&github_path).unwrap().lines().map(str::to_string).rev().collect();
        let path = added.into_iter().chain(["/usr/bin".to_string(), "/bin".to_string()]).collect::<Vec<_>>().join(":");
        let cwd = ci.join(fill(step["working-directory"].as_str().unwrap_or(".")));
        let mut command = std::process::Command::new("bash");
        command
            .args(["-e", "-c", &fill(step["run"].as_str().unwrap())])
            .current_dir(cwd)
            .env_clear()
            .env("PATH", path)
            .env("HOME", work.path())
            .env("GITHUB_PATH", &github_path)
            .env("GITHUB_STEP_SUMMARY", &summary)
            .env("HONUA_INSTALL_BASE", format!("file://{}", release.path().display()));
        for (key, value) in step["env"].as_object().into_iter().flatten() {
            command.env(key, fill(value.as_str().unwrap()));
        }
        let out = command.output().unwrap();
        let name = step["name"].as_str().unwrap().to_string();
        outcomes.push((name, out.status.code(), String::from_utf8_lossy(&out.stderr).into_owned()));
    }
    let (last, rest) = outcomes.split_last().unwrap();
    for (name, code, err) in rest {
        assert_eq!(*code, Some(0), "{name}: {err}");
    }
    assert_eq!(last.1, Some(1), "{}: {}", last.0, last.2);
    let written = std::fs::read_to_string(&summary).unwrap();
    assert!(written.contains("production") && written.contains("bike_lanes"), "{written}");
    assert!(temp.join("honua-bin/honua").exists(), "installed from the release");
}

/// Helm: on the PATH, or where `.ci/run` puts it (`target/tools/helm`, from the npm registry).
fn helm() -> Option<std::path::PathBuf> {
    let local = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/tools/helm");
    if local.exists() {
        return Some(local);
    }
    std::process::Command::new("helm")
        .arg("version")
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|_| "helm".into())
}

/// The Helm chart (deploy/helm/honua-gitops): `helm lint --strict`, then rendered for SQLite (one
/// replica, its volume, recreated not rolled) and for PostgreSQL with three replicas (a disruption budget,
/// the URL from a Secret), with the App's Secret, the Ingress and the probes; wrong values fail with a
/// sentence. The rendered manifests pass the Kubernetes schemas where kubernetes-validate is installed.
#[test]
fn the_helm_chart_lints_and_renders_for_sqlite_and_postgres() {
    let Some(helm) = helm() else {
        eprintln!("helm is not installed: skipping the chart's test (.ci/run installs it into target/tools)");
        return;
    };
    let chart = deploy("helm/honua-gitops");
    let run = |args: &[&str]| {
        let out = std::process::Command::new(&helm).args(args).output().unwrap();
        let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
        (out.status.success(), text(&out.stdout), text(&out.stderr))
    };
    let chart_path = chart.to_str().unwrap();
    let (ok, out, err) = run(&["lint", "--strict", chart_path]);
    assert!(ok, "{out}{err}");

    let (ok, sqlite, err) = run(&[
        "template",
        "gitops",
        chart_path,
        "--set",
        "github.appId=42",
        "--set",
        "github.privateKey=KEY",
        "--set",
        "github.webhookSecret=s",
    ]);
    assert!(ok, "{err}");
    let kinds =
        |text: &str| text.lines().filter_map(|l| l.strip_prefix("kind: ")).map(str::to_string).collect::<Vec<_>>();
    assert_eq!(kinds(&sqlite), ["Secret", "PersistentVolumeClaim", "Service", "Deployment", "Ingress"], "{sqlite}");
    for needle in [
        "replicas: 1",
        "type: Recreate",
        "sqlite:///var/lib/honua/db/honua.db",
        "claimName: gitops-honua-gitops-data",
        "path: /readyz",
        "path: /healthz",
        "host: \"gitops.example.org\"",
        "key: webhook-secret",
        "HONUA_GITHUB_PRIVATE_KEY_PATH",
    ] {
        assert!(sqlite.contains(needle), "SQLite render lacks {needle}:\n{sqlite}");
    }

    let (ok, pg, err) = run(&[
        "template",
        "gitops",
        chart_path,
        "--set",
        "database.type=postgres",
        "--set",
        "database.postgres.existingSecret=db",
        "--set",
        "replicaCount=3",
        "--set",
        "github.appId=42",
        "--set",
        "github.existingSecret=gh",
    ]);
    assert!(ok, "{err}");
    assert_eq!(kinds(&pg), ["PodDisruptionBudget", "Service", "Deployment", "Ingress"], "{pg}");
    for needle in
        ["replicas: 3", "type: RollingUpdate", "name: db, key: database-url", "secretName: gh", "minAvailable: 1"]
    {
        assert!(pg.contains(needle), "PostgreSQL render lacks {needle}:\n{pg}");
    }

    for (values, says) in [
        (vec!["--set", "database.type=postgres"], "give database.postgres.existingSecret"),
        (vec!["--set", "database.type=mysql"], "use sqlite or postgres"),
        (vec!["--set", "github.appId=42"], "give github.existingSecret, or github.privateKey and github.webhookSecret"),
    ] {
        let mut args = vec!["template", "gitops", chart_path];
        args.extend(values);
        let (ok, _, err) = run(&args);
        assert!(!ok && err.contains(says), "{args:?}: {err}");
    }

    // The Kubernetes schemas, where kubernetes-validate is installed.
    let validate = "import sys, yaml, kubernetes_validate\nfor d in yaml.safe_load_all(sys.stdin):\n    \
        d and kubernetes_validate.validate(d, '1.30.0', strict=True)\n";
    for rendered in [&sqlite, &pg] {
        let mut child = std::process::Command::new("python3")
            .args(["-c", validate])
            .stdin(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        std::io::Write::write_all(&mut child.stdin.take().unwrap(), rendered.as_bytes()).unwrap();
        let out = child.wait_with_output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        if err.contains("No module named 'kubernetes_validate'") {
            eprintln!("kubernetes-validate is not installed: the rendered chart's schemas are not checked");
            break;
        }
        assert!(out.status.success(), "{err}");
    }
}
