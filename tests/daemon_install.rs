//! `scripts/install-service`, staged under a temporary root (`DESTDIR`): the
//! layout the systemd unit expects, an installed configuration that names the
//! installed model and validates, and an existing configuration kept.

mod daemon_common;

use std::path::Path;
use std::process::Command;

/// A copy of the files the script installs, with a small bundle as the model.
fn repository_copy(root: &Path) {
    for dir in ["scripts", "conf", "systemd", "models"] {
        std::fs::create_dir_all(root.join(dir)).unwrap();
    }
    let repo = daemon_common::repo();
    for file in [
        "scripts/install-service",
        "conf/flowgen.toml",
        "systemd/flowgen.service",
    ] {
        std::fs::copy(repo.join(file), root.join(file)).unwrap();
    }
    let (_trained_dir, trained) = daemon_common::baseline_bundle();
    let status = Command::new("cp")
        .arg("-r")
        .arg(&trained)
        .arg(root.join("models/cidds-001"))
        .status()
        .unwrap();
    assert!(status.success());
}

fn install(copy: &Path, stage: &Path) -> std::process::Output {
    Command::new(copy.join("scripts/install-service"))
        .env("DESTDIR", stage)
        .env("FLOWGEN_BINARY", env!("CARGO_BIN_EXE_flowgen"))
        .output()
        .unwrap()
}

#[test]
fn the_install_script_lays_out_what_the_unit_expects() {
    let dir = tempfile::tempdir().unwrap();
    let (copy, stage) = (dir.path().join("repo"), dir.path().join("root"));
    repository_copy(&copy);

    let output = install(&copy, &stage);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(output.status.success(), "{text}");
    assert!(
        text.contains(": ok"),
        "the installed config was not checked: {text}"
    );

    let unit = std::fs::read_to_string(stage.join("etc/systemd/system/flowgen.service")).unwrap();
    let config = std::fs::read_to_string(stage.join("etc/flowgen/flowgen.toml")).unwrap();
    let model = "/usr/local/share/flowgen/models/cidds-001";
    assert!(config.contains(&format!("path = \"{model}\"")), "{config}");
    assert!(stage.join(&model[1..]).join("manifest.json").is_file());
    assert!(stage.join("usr/local/bin/flowgen").is_file());
    for line in [
        "ExecStart=/usr/local/bin/flowgen run --config /etc/flowgen/flowgen.toml",
        "ExecStartPre=/usr/local/bin/flowgen check-config --config /etc/flowgen/flowgen.toml",
        "ExecReload=/bin/kill -HUP $MAINPID",
        "Type=notify",
        "WatchdogSec=",
        "DynamicUser=yes",
    ] {
        assert!(unit.contains(line), "{line} missing from the unit");
    }

    // A second run keeps the operator's file and puts the shipped one beside it.
    std::fs::write(
        stage.join("etc/flowgen/flowgen.toml"),
        config.replace("1000", "1234"),
    )
    .unwrap();
    let output = install(&copy, &stage);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let kept = std::fs::read_to_string(stage.join("etc/flowgen/flowgen.toml")).unwrap();
    assert!(kept.contains("flows_per_s = 1234"));
    assert!(stage.join("etc/flowgen/flowgen.toml.dist").is_file());
}
