//! The project's web side as a person or a client uses it: account
//! creation, and BOINC's PHP pages with a logged-in user's cookie. Requests
//! go through `curl` (argv; fields URL-encoded by curl).
use anyhow::{bail, Context, Result};
use sha2::{Digest, Sha256};
use std::process::Command;

/// GET (`post` false) or POST of form `fields` to `url`, as the user whose
/// authenticator is `auth`; the body of the answer.
pub fn request(
    url: &str,
    fields: &[(&str, &str)],
    auth: Option<&str>,
    post: bool,
) -> Result<String> {
    let mut curl = Command::new("curl");
    curl.args(["-sS", "--max-time", "60"]);
    if !post {
        curl.arg("-G");
    }
    if let Some(auth) = auth {
        curl.arg("-b").arg(format!("auth={auth}"));
    }
    for (name, value) in fields {
        curl.arg("--data-urlencode").arg(format!("{name}={value}"));
    }
    curl.arg(url);
    let out = curl.output().context("cannot run curl")?;
    let body = String::from_utf8_lossy(&out.stdout).into_owned();
    if !out.status.success() {
        bail!(
            "{url}: curl failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(body)
}

/// Creates (or finds, with the same password) the account `email` with
/// create_account.php, the RPC a client's "create account" uses, and
/// returns its authenticator.
pub fn create_account(project_url: &str, email: &str, name: &str) -> Result<String> {
    // The RPC takes the hash of the password (any 32 characters).
    let digest = Sha256::digest(format!("{email}:docker_wrapper"));
    let hash: String = digest[..16].iter().map(|b| format!("{b:02x}")).collect();
    let body = request(
        &format!("{project_url}create_account.php"),
        &[
            ("email_addr", email),
            ("passwd_hash", &hash),
            ("user_name", name),
        ],
        None,
        false,
    )?;
    match between(&body, "<authenticator>", "</authenticator>") {
        Some(auth) => Ok(auth.to_string()),
        None => bail!("create_account.php gave no authenticator: {body}"),
    }
}

/// The text between the first `open` and the next `close`.
pub fn between<'a>(text: &'a str, open: &str, close: &str) -> Option<&'a str> {
    let start = text.find(open)? + open.len();
    let len = text[start..].find(close)?;
    Some(text[start..start + len].trim())
}
