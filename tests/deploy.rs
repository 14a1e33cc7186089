//! What `deploy/` ships is checked: the linters this machine has (`deploy/lint.sh`: systemd units with
//! systemd-analyze, YAML and JSON, Kubernetes schemas, the Dockerfile's rules), and the example
//! configuration files load with the settings code they document.

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
