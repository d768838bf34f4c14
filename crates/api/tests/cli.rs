//! The `api` binary refuses to start with a short `INTERNAL_API_SECRET`, naming the setting and never
//! echoing its value.

use std::process::Command;

#[test]
fn a_short_secret_is_refused_at_start_up() {
    let short = "short-secret-31-characters-long";
    assert_eq!(short.len(), 31);
    let output = Command::new(env!("CARGO_BIN_EXE_api"))
        .env_clear()
        .env("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/unused")
        .env(
            "ENCRYPTION_KEY",
            "dGVzdC1lbmNyeXB0aW9uLWtleS0zMi1ieXRlcy0wMDA=",
        )
        .env("INTERNAL_API_SECRET", short)
        .output()
        .expect("the binary runs");
    let text = String::from_utf8_lossy(&output.stdout).into_owned()
        + &String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{text}");
    assert!(
        text.contains("INTERNAL_API_SECRET is shorter than 32 characters"),
        "{text}"
    );
    assert!(!text.contains(short), "the value is never echoed: {text}");
}
