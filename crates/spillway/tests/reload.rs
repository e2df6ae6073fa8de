//! `spillway serve` reloads its configuration file on SIGHUP and on `spillway reload`: a new
//! tenant takes effect, an invalid file is refused with its error logged while the running
//! configuration keeps serving, and the process lives on.
mod common;

use std::time::Duration;

use common::{Proc, TempFile, bin, small_config};
use serde_json::json;

const T: Duration = Duration::from_secs(30);

async fn status(base: &str, key: &str) -> u16 {
    reqwest::Client::new()
        .post(format!("{base}/v1/chat/completions"))
        .bearer_auth(key)
        .json(&json!({
            "model": "us.demo.chat-small-v1:0",
            "messages": [{"role": "user", "content": "hi"}],
            "max_tokens": 3,
        }))
        .send()
        .await
        .expect("answer")
        .status()
        .as_u16()
}

#[tokio::test(flavor = "multi_thread")]
async fn sighup_and_spillway_reload_apply_a_valid_file_and_refuse_an_invalid_one() {
    let key = "{ env = \"SPILLWAY_TEST_KEY\" }";
    let beta = "[[tenants]]\nname = \"beta\"\napi_keys = [{ env = \"SPILLWAY_BETA_KEY\" }]\n";
    let f = TempFile::new("reload", &small_config(key, ""));
    let mut server = Proc::spawn(
        bin()
            .args(["serve", "--config", f.s()])
            .env("SPILLWAY_TEST_KEY", "sk-one")
            .env("SPILLWAY_BETA_KEY", "sk-beta"),
    );
    let base = format!("http://{}", server.wait_listening("us-east-1", T));
    let admin = server.wait_admin(T);
    assert_eq!(status(&base, "sk-one").await, 200);
    assert_eq!(
        status(&base, "sk-beta").await,
        401,
        "beta is not a tenant yet"
    );

    // SIGHUP with a new tenant.
    std::fs::write(f.path(), small_config(key, beta)).expect("write");
    server.sighup();
    server
        .stderr
        .wait_for(T, |l| l.starts_with("spillway: reloaded"))
        .unwrap_or_else(|| panic!("no reload line\n{}", server.output()));
    assert_eq!(status(&base, "sk-beta").await, 200, "the new tenant");

    // An invalid file: refused, logged, the running configuration serves.
    let broken = small_config(key, beta).replace("max_attempts = 3", "max_attempts = 0");
    std::fs::write(f.path(), broken).expect("write");
    server.sighup();
    server
        .stderr
        .wait_for(T, |l| {
            l.contains("was not reloaded") && l.contains("max_attempts")
        })
        .unwrap_or_else(|| panic!("no refusal line\n{}", server.output()));
    assert_eq!(status(&base, "sk-one").await, 200);
    assert_eq!(status(&base, "sk-beta").await, 200);

    // `spillway reload` says the same and fails.
    let mut cli = Proc::spawn(bin().args(["reload", "--admin", &admin]));
    let exit = cli.wait_exit(T).expect("reload exits");
    assert!(!exit.success(), "{}", cli.output());
    assert!(cli.output().contains("max_attempts"), "{}", cli.output());

    // Fixed again: `spillway reload` applies it.
    std::fs::write(f.path(), small_config(key, "")).expect("write");
    let mut cli = Proc::spawn(bin().args(["reload", "--admin", &admin]));
    let exit = cli.wait_exit(T).expect("reload exits");
    assert!(exit.success(), "{}", cli.output());
    assert_eq!(status(&base, "sk-beta").await, 401, "beta removed");
    assert_eq!(status(&base, "sk-one").await, 200);

    server.sigterm();
    let exit = server.wait_exit(T).expect("exits after SIGTERM");
    assert!(exit.success(), "{}", server.output());
}

/// Addresses given on the command line stay for the process: reloading the unchanged file
/// (whose listener and admin addresses differ) is not "listeners changed".
#[tokio::test(flavor = "multi_thread")]
async fn a_reload_keeps_the_listen_and_admin_addresses_of_the_command_line() {
    let key = "{ env = \"SPILLWAY_TEST_KEY\" }";
    let file = small_config(key, "")
        .replace(
            "bind = \"127.0.0.1:0\"\nregion",
            "bind = \"127.0.0.2:9\"\nregion",
        )
        .replace(
            "[admin]\nbind = \"127.0.0.1:0\"",
            "[admin]\nbind = \"127.0.0.2:10\"",
        );
    assert!(file.contains("127.0.0.2:9") && file.contains("127.0.0.2:10"));
    let f = TempFile::new("reload-cli", &file);
    let mut server = Proc::spawn(
        bin()
            .args(["serve", "--config", f.s()])
            .args(["--listen", "127.0.0.1:0", "--admin", "127.0.0.1:0"])
            .env("SPILLWAY_TEST_KEY", "sk-one"),
    );
    let base = format!("http://{}", server.wait_listening("us-east-1", T));
    let admin = server.wait_admin(T);
    let mut cli = Proc::spawn(bin().args(["reload", "--admin", &admin]));
    let exit = cli.wait_exit(T).expect("reload exits");
    assert!(exit.success(), "{}\n{}", cli.output(), server.output());
    assert_eq!(
        status(&base, "sk-one").await,
        200,
        "still on the same address"
    );
    server.sigterm();
    assert!(server.wait_exit(T).expect("exits").success());
}
