//! Container names, compatible with the C++ wrapper and the BOINC client's
//! cleanup (which removes engine objects named `boinc__*` that no active
//! task owns), and name components valid in image references.

/// Docker and Podman accept longer names, but references over 255 characters
/// are refused; keep room for a registry prefix and a tag.
const MAX_NAME: usize = 200;

/// Label on every container docker_wrapper makes: its version.
pub const WRAPPER_LABEL: &str = "boinc.docker_wrapper";
/// Label on a task's container: the BOINC result it runs.
pub const RESULT_LABEL: &str = "boinc.result";
/// Label on a task's container: the slot directory of the task it belongs
/// to, so that another slot's wrapper does not adopt it.
pub const SLOT_LABEL: &str = "boinc.docker_wrapper.slot";

/// `boinc__<project>__<result>`: the container of one task, named as the
/// C++ wrapper names it, so the BOINC client's cleanup recognises it.
pub fn task_container(project_dir_name: &str, result_name: &str) -> String {
    shorten(format!(
        "boinc__{}__{}",
        sanitize(project_dir_name),
        sanitize(result_name)
    ))
}

/// [`sanitize`]d, and shortened like a container name when longer, so that
/// an image reference made from it stays within the engines' 255 characters.
/// A name that sanitising changed gets a hash of the original, so that two
/// projects whose names differ only in case or in replaced characters never
/// share an image repository (and one's cache collection the other's images).
pub fn component(text: &str) -> String {
    let clean = sanitize(text);
    if clean == text {
        return shorten(clean);
    }
    shorten(format!("{clean}-{:08x}", fnv1a(text.as_bytes()) as u32))
}

/// Lower-cases like the C++ wrapper and replaces what an image reference
/// cannot hold: any run of characters other than [a-z0-9] that is not a
/// valid separator (".", "_", "__" or dashes) becomes a single "-".
/// BOINC's own names ([A-Za-z0-9_.-]) come out exactly as C++ makes them.
fn sanitize(text: &str) -> String {
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
        if bytes.is_empty()
            || !bytes[0].is_ascii_alphanumeric()
            || !bytes[bytes.len() - 1].is_ascii_alphanumeric()
        {
            return false;
        }
        s.split(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
            .all(|sep| sep.is_empty() || valid_separator(sep) == sep)
            && s.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "._-".contains(c))
    }

    #[test]
    fn boinc_names_match_the_cpp_wrapper() {
        assert_eq!(
            task_container("boinc.berkeley.edu_central", "WU_123_0"),
            "boinc__boinc.berkeley.edu_central__wu_123_0"
        );
        assert_eq!(
            task_container("example.org_test", "Job-7"),
            "boinc__example.org_test__job-7"
        );
    }

    #[test]
    fn odd_characters_become_valid_names() {
        for raw in [
            "a b",
            "it's",
            "x;rm -rf /",
            "$(id)",
            "ünïcødé",
            "..",
            "",
            "a__.b",
            "-lead",
            "trail-",
        ] {
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

/// Property tests: whatever the input, names are valid for both engines,
/// bounded, stable, and distinct where the input's kept characters differ.
#[cfg(test)]
pub(crate) mod props {
    use super::*;
    use crate::property_tests::config;
    use proptest::collection::vec;
    use proptest::prelude::*;
    use proptest::sample::select;
    use regex::Regex;

    /// Docker's container name rule (Podman's allows one character less).
    pub(crate) const CONTAINER_NAME: &str = "^[a-zA-Z0-9][a-zA-Z0-9_.-]+$";
    /// A path component of an image reference (distribution/reference).
    pub(crate) const PATH_COMPONENT: &str = "^[a-z0-9]+(?:(?:[._]|__|[-]*)[a-z0-9]+)*$";

    pub(crate) fn matches(grammar: &str, s: &str) -> bool {
        Regex::new(grammar).unwrap().is_match(s)
    }

    /// Text with what a shell, a path or an engine would stumble on.
    pub(crate) fn hostile_text() -> impl Strategy<Value = String> {
        let c = prop_oneof![
            3 => any::<char>(),
            4 => select(vec![
                ' ', '"', '\'', ';', '$', '(', ')', '`', '\0', '/', '\\', ':', '@', '.', '_', '-',
                '\n', 'A', 'Z', 'İ', 'K', 'é', '\u{feff}',
            ]),
            3 => prop::char::range('a', 'z'),
        ];
        prop_oneof![
            8 => vec(c.clone(), 0..40),
            1 => vec(c, 300..600),
        ]
        .prop_map(|c| c.into_iter().collect())
    }

    /// Names already in the image grammar, short or long.
    fn clean_name() -> impl Strategy<Value = String> {
        prop_oneof![
            "[a-z0-9]{1,8}((\\.|_|__|-{1,3})[a-z0-9]{1,8}){0,4}",
            "[a-z0-9]{1,8}((\\.|_|__|-{1,3})[a-z0-9]{1,8}){40,60}",
        ]
    }

    proptest! {
        #![proptest_config(config(1024))]

        #[test]
        fn task_containers_are_valid_bounded_and_stable(
            project in hostile_text(),
            result in hostile_text(),
        ) {
            let name = task_container(&project, &result);
            prop_assert!(matches(CONTAINER_NAME, &name), "{:?}", name);
            // The BOINC client's cleanup also treats it as an image name.
            prop_assert!(matches(PATH_COMPONENT, &name), "{:?}", name);
            prop_assert!(name.starts_with("boinc__"), "{:?}", name);
            prop_assert!(name.len() <= MAX_NAME, "{} bytes", name.len());
            prop_assert_eq!(task_container(&project, &result), name);
        }

        #[test]
        fn components_are_valid_bounded_and_stable(text in hostile_text()) {
            let c = component(&text);
            prop_assert!(matches(PATH_COMPONENT, &c), "{:?}", c);
            prop_assert!(c.len() <= MAX_NAME, "{} bytes", c.len());
            prop_assert_eq!(component(&text), c);
        }

        #[test]
        fn distinct_names_give_distinct_components(a in hostile_text(), b in hostile_text()) {
            prop_assume!(a != b);
            prop_assert_ne!(component(&a), component(&b));
        }

        #[test]
        fn clean_names_are_kept_or_stay_distinct(a in clean_name(), b in clean_name()) {
            prop_assume!(a != b);
            if a.len() <= MAX_NAME {
                prop_assert_eq!(component(&a), a.clone());
            }
            prop_assert_ne!(component(&a), component(&b));
            prop_assert_ne!(task_container("p", &a), task_container("p", &b));
            prop_assert_ne!(task_container(&a, "r"), task_container(&b, "r"));
        }
    }

    #[test]
    fn names_that_differ_only_in_replaced_characters_stay_apart() {
        let names = ["a b", "a;b", "a..b", "a-b", "A-b", "", "x", "é"];
        let components: std::collections::HashSet<String> =
            names.iter().map(|n| component(n)).collect();
        assert_eq!(components.len(), names.len(), "{components:?}");
        assert_eq!(component("a-b"), "a-b", "valid names are kept");
    }

    /// The input that once gave a component too long for an image name.
    #[test]
    fn long_components_are_shortened() {
        let a = component(&"a".repeat(300));
        let b = component(&format!("{}b", "a".repeat(299)));
        assert!(a.len() <= MAX_NAME && matches(PATH_COMPONENT, &a), "{a}");
        assert_ne!(a, b);
        // Up to the limit, nothing changes.
        assert_eq!(component(&"a".repeat(MAX_NAME)), "a".repeat(MAX_NAME));
    }
}
