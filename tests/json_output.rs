//! `list --format json` and `check --format json`: one JSON document on stdout, in the schema
//! the README documents, carrying the same facts as the text (which stays the default and is
//! pinned by tests/golden.rs).

mod common;

use serde_json::Value;

use common::certified::CertifiedCopy;
use common::{TOKEN, fixture, module_path};

/// stdout of a successful run, parsed as JSON, and the text run of the same command.
fn json_and_text(
    cmd: impl Fn() -> assert_cmd::Command,
    args: &[&str],
    code: i32,
) -> (Value, String, String) {
    let out = cmd()
        .args(args)
        .args(["--format", "json"])
        .assert()
        .code(code)
        .get_output()
        .clone();
    let (stdout, _) = common::texts(&out);
    let json: Value = serde_json::from_str(&stdout).expect("stdout is one JSON document");
    let out = cmd().args(args).assert().code(code).get_output().clone();
    let (text_out, text_err) = common::texts(&out);
    (json, text_out, text_err)
}

fn strings(value: &Value) -> Vec<&str> {
    value
        .as_array()
        .expect("an array")
        .iter()
        .map(|v| v.as_str().expect("a string"))
        .collect()
}

#[test]
fn list_json_carries_the_facts_of_the_text() {
    let module = module_path().display().to_string();
    let (json, text, _) = json_and_text(
        || fixture().suitekey(),
        &["list", "--module", &module, "--mechanisms"],
        0,
    );
    assert_eq!(json["module"]["path"], module);
    assert_eq!(json["module"]["default"], false);
    assert!(
        text.starts_with(&format!(
            "module {module}: {}\n",
            json["module"]["description"].as_str().unwrap()
        )),
        "{text}"
    );
    let slots = json["slots"].as_array().unwrap();
    let tokens: Vec<&Value> = slots
        .iter()
        .filter(|s| s["token"]["initialized"] == true)
        .map(|s| &s["token"])
        .collect();
    assert_eq!(tokens.len(), 1, "{json:#}");
    let token = tokens[0];
    assert_eq!(token["label"], TOKEN);
    assert_eq!(token["serial"], fixture().serial());
    assert_eq!(token["error"], Value::Null);
    assert_eq!(token["private_objects_hidden"], true);
    assert!(text.contains(&format!("  serial {}, ", fixture().serial())));
    assert!(text.contains(&format!(
        "  can sign: {}\n",
        strings(&token["can_sign"]).join(" ")
    )));
    assert!(text.contains(&format!(
        "  flags: {}\n",
        strings(&token["flags"]).join(", ")
    )));

    let keys = token["keys"].as_array().unwrap();
    assert_eq!(keys.len(), text.matches("      pkcs11:").count());
    for key in keys {
        let line = format!(
            "'{}' id {}: {} → NetSuite {}",
            key["label"].as_str().unwrap(),
            key["id"].as_str().unwrap(),
            key["kind"].as_str().unwrap(),
            key["netsuite_problem"]
                .as_str()
                .map_or_else(|| strings(&key["netsuite_algs"]).join(" "), str::to_owned)
        );
        assert!(text.contains(&line), "{line}\n{text}");
        assert!(text.contains(&format!("      {}\n", key["uri"].as_str().unwrap())));
        assert_eq!(key["public_only"], true);
    }
    let rsa2048 = keys.iter().find(|k| k["label"] == "rsa2048").unwrap();
    assert!(
        rsa2048["netsuite_problem"]
            .as_str()
            .unwrap()
            .starts_with("refused:")
    );

    let certs = token["certificates"].as_array().unwrap();
    assert!(!certs.is_empty());
    for cert in certs {
        let info = &cert["certificate"];
        if info.is_null() {
            let problem = cert["problem"].as_str().unwrap();
            assert!(text.contains(&format!("      ({problem})\n")), "{text}");
            continue;
        }
        let id = info["certificate_id"].as_str().unwrap();
        assert!(
            text.contains(&format!("      certificate id {id}\n")),
            "{text}"
        );
        assert!(text.contains(&format!(
            "({} days left)",
            info["days_left"].as_i64().unwrap()
        )));
    }

    let algorithms = token["algorithms"].as_array().unwrap();
    assert_eq!(algorithms.len(), 6);
    for row in algorithms {
        let yes = |c: &Value| if c["ok"] == true { "yes" } else { "no " };
        let line = format!(
            "    {}  keygen: {}  sign: {}  (",
            row["alg"].as_str().unwrap(),
            yes(&row["keygen"]),
            yes(&row["sign"])
        );
        assert!(text.contains(&line), "{line}\n{text}");
    }
}

#[test]
fn list_json_without_mechanisms_leaves_them_out() {
    let module = module_path().display().to_string();
    let (json, _, _) = json_and_text(|| fixture().suitekey(), &["list", "--module", &module], 0);
    let token = json["slots"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["token"]["label"] == TOKEN)
        .map(|s| &s["token"])
        .unwrap();
    assert!(token.get("algorithms").is_none(), "{token:#}");
}

#[test]
fn check_json_carries_the_facts_of_the_text() {
    let c = CertifiedCopy::new();
    let pem = c.pem.display().to_string();
    let uri = c.uri();
    let (json, stdout, stderr) = json_and_text(
        || common::suitekey_with_conf(&c.conf),
        &["check", "--cert", &pem, "--key", &uri],
        0,
    );
    assert_eq!(json["certificate_id"], c.kid);
    assert_eq!(stdout.trim(), c.kid);
    assert_eq!(json["fit"], true);
    assert_eq!(json["problems"], serde_json::json!([]));
    assert_eq!(json["warnings"], serde_json::json!([]));
    let facts = json["facts"].as_object().unwrap();
    for (name, shown) in [
        ("subject", "subject"),
        ("key", "key"),
        ("valid", "valid"),
        ("self_signature", "self-signature"),
        ("certificate_id", "certificate-id"),
        ("key_match", "key match"),
    ] {
        let value = facts[name].as_str().unwrap();
        assert!(
            stderr.contains(&format!("{shown:>16}: {value}\n")),
            "{name}: {stderr}"
        );
    }
}

#[test]
fn check_json_of_an_unfit_certificate_lists_its_problems_and_exits_1() {
    let dir = common::temp_dir();
    let pem = dir.path().join("rsa2048.pem");
    let made = std::process::Command::new("openssl")
        .args(["req", "-x509", "-nodes", "-subj", "/CN=rsa2048"])
        .args(["-newkey", "rsa:2048", "-days", "1000", "-keyout"])
        .arg(dir.path().join("rsa2048.key"))
        .arg("-out")
        .arg(&pem)
        .output()
        .expect("openssl req");
    assert!(made.status.success());
    let pem = pem.display().to_string();
    let (json, _, stderr) = json_and_text(
        || fixture().suitekey(),
        &["check", "--cert", &pem, "--certificate-id", "another-id"],
        1,
    );
    assert_eq!(json["fit"], false);
    let problems = strings(&json["problems"]);
    assert_eq!(problems.len(), 2, "{json:#}");
    for problem in &problems {
        assert!(
            stderr.contains(&format!("problem: {problem}\n")),
            "{stderr}"
        );
    }
    let warnings = strings(&json["warnings"]);
    assert_eq!(warnings.len(), 1, "{json:#}");
    assert!(stderr.contains(&format!("warning: {}\n", warnings[0])));
}
