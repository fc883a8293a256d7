//! Container names, compatible with the C++ wrapper and the BOINC client's
//! cleanup (which removes engine objects named `boinc__*` that no active
//! task owns), and name components valid in image references.

/// Docker and Podman accept longer names, but references over 255 characters
/// are refused; keep room for a registry prefix and a tag.
const MAX_NAME: usize = 200;

/// `boinc__<project>__<result>`: the container of one task, named as the
/// C++ wrapper names it, so the BOINC client's cleanup recognises it.
pub fn task_container(project_dir_name: &str, result_name: &str) -> String {
    shorten(format!("boinc__{}__{}", component(project_dir_name), component(result_name)))
}

/// Lower-cases like the C++ wrapper and replaces what an image reference
/// cannot hold: any run of characters other than [a-z0-9] that is not a
/// valid separator (".", "_", "__" or dashes) becomes a single "-".
/// BOINC's own names ([A-Za-z0-9_.-]) come out exactly as C++ makes them.
pub fn component(text: &str) -> String {
    let lower = text.to_lowercase();
    let mut out = String::with_capacity(lower.len());
    let mut separator = String::new();
    for c in lower.chars() {
        if c.is_ascii_lowercase() || c.is_ascii_digit() {
            if !separator.is_empty() && !out.is_empty() {
                out.push_str(valid_separator(&separator));
            }
            separator.clear();
            out.push(c);
        } else {
            separator.push(c);
        }
    }
    if out.is_empty() {
        out.push('x');
    }
    out
}

fn valid_separator(run: &str) -> &str {
    match run {
        "." | "_" | "__" => run,
        _ if run.chars().all(|c| c == '-') => run,
        _ => "-",
    }
}

/// Names too long for the engine keep their start and get a hash of the
/// whole name, so two long names stay distinct.
fn shorten(name: String) -> String {
    if name.len() <= MAX_NAME {
        return name;
    }
    let hash = format!("{:016x}", fnv1a(name.as_bytes()));
    let mut cut = MAX_NAME - hash.len() - 1;
    while !name.is_char_boundary(cut) {
        cut -= 1;
    }
    let head = name[..cut].trim_end_matches(|c: char| !c.is_ascii_alphanumeric());
    format!("{head}-{hash}")
}

/// Stable, dependency-free 64-bit hash for name shortening.
pub fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The grammar of a Docker image path component.
    fn is_valid_component(s: &str) -> bool {
        let bytes = s.as_bytes();
        if bytes.is_empty() || !bytes[0].is_ascii_alphanumeric() || !bytes[bytes.len() - 1].is_ascii_alphanumeric() {
            return false;
        }
        s.split(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
            .all(|sep| sep.is_empty() || valid_separator(sep) == sep)
            && s.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "._-".contains(c))
    }

    #[test]
    fn boinc_names_match_the_cpp_wrapper() {
        assert_eq!(
            task_container("boinc.berkeley.edu_central", "WU_123_0"),
            "boinc__boinc.berkeley.edu_central__wu_123_0"
        );
        assert_eq!(task_container("example.org_test", "Job-7"), "boinc__example.org_test__job-7");
    }

    #[test]
    fn odd_characters_become_valid_names() {
        for raw in ["a b", "it's", "x;rm -rf /", "$(id)", "ünïcødé", "..", "", "a__.b", "-lead", "trail-"] {
            let name = task_container("proj", raw);
            assert!(is_valid_component(&name), "{raw:?} -> {name:?}");
        }
    }

    #[test]
    fn long_names_are_shortened_and_stay_distinct() {
        let a = task_container("proj", &"a".repeat(300));
        let b = task_container("proj", &format!("{}b", "a".repeat(299)));
        assert!(a.len() <= MAX_NAME && b.len() <= MAX_NAME);
        assert_ne!(a, b);
        assert!(is_valid_component(&a));
    }
}
