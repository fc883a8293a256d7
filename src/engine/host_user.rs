//! What an unprivileged wrapper needs of its host, and what to tell the
//! volunteer when it is missing. The BOINC client runs as the user `boinc`:
//! Docker needs that user in the `docker` group, rootless Podman needs
//! subordinate ids for it in /etc/subuid and /etc/subgid.
use std::fs;

use super::{Engine, EngineKind};
use crate::os;

impl Engine {
    /// Checks the host for this engine; warns about what is missing (the
    /// engine's own error may follow and would not say why).
    pub fn check_host_user(&self) {
        // Through a helper or in a VM, Podman's user is not this one.
        if self.helper.is_none() && !self.in_vm {
            check(self.kind)
        }
    }

    /// What to tell the volunteer when this user may not use the engine.
    pub(super) fn access_hint(&self) -> Option<String> {
        access_hint(self.kind)
    }
}

fn check(kind: EngineKind) {
    let (uid, _) = os::user_and_group();
    if uid == 0 || kind != EngineKind::Podman {
        return;
    }
    let name = user_name(uid).unwrap_or_else(|| uid.to_string());
    let has_ids = |file: &str| {
        fs::read_to_string(file).is_ok_and(|text| has_subordinate_ids(&text, &name, uid))
    };
    if !has_ids("/etc/subuid") || !has_ids("/etc/subgid") {
        log::warn!(
            "user {name} has no subordinate ids in /etc/subuid and /etc/subgid: rootless Podman then maps only \
             the user's own id, and images with files of other owners fail. As root, with a range no other \
             user has: usermod --add-subuids 200000-265535 --add-subgids 200000-265535 {name}"
        );
    }
}

fn access_hint(kind: EngineKind) -> Option<String> {
    let (uid, _) = os::user_and_group();
    if kind != EngineKind::Docker || uid == 0 {
        return None;
    }
    let name = user_name(uid).unwrap_or_else(|| uid.to_string());
    Some(format!(
        "user {name} may not use the Docker daemon: as root, `usermod -aG docker {name}`, then restart the BOINC client"
    ))
}

/// `name:start:count` lines, by user name or uid.
fn has_subordinate_ids(text: &str, name: &str, uid: u32) -> bool {
    let uid = uid.to_string();
    text.lines().any(|line| {
        let mut fields = line.trim().split(':');
        let owner = fields.next().unwrap_or_default();
        let count = fields
            .nth(1)
            .and_then(|c| c.parse::<u64>().ok())
            .unwrap_or(0);
        (owner == name || owner == uid) && count > 0
    })
}

pub fn user_name(uid: u32) -> Option<String> {
    let passwd = fs::read_to_string("/etc/passwd").ok()?;
    passwd.lines().find_map(|line| {
        let fields: Vec<&str> = line.split(':').collect();
        (fields.get(2)? == &uid.to_string().as_str()).then(|| fields[0].to_string())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subordinate_ids_by_name_or_uid() {
        let text = "alice:100000:65536\n102:200000:65536\nempty:300000:0\n";
        assert!(has_subordinate_ids(text, "alice", 1000));
        assert!(has_subordinate_ids(text, "boinc", 102));
        assert!(!has_subordinate_ids(text, "empty", 5));
        assert!(!has_subordinate_ids(text, "bob", 1001));
        assert!(!has_subordinate_ids("garbage", "bob", 1001));
    }
}
