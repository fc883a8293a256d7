//! The part of a Dockerfile that decides which slot files an image is built
//! from: the sources of its COPY and ADD instructions.
use crate::argv;

/// Sources of COPY/ADD instructions, as written (relative to the build
/// context). `COPY --from=stage` and remote `ADD` sources are not context files.
pub fn context_sources(dockerfile: &str) -> Vec<String> {
    let mut sources = Vec::new();
    for instruction in instructions(dockerfile) {
        let (keyword, rest) = instruction
            .split_once(char::is_whitespace)
            .unwrap_or((&instruction, ""));
        let keyword = keyword.to_ascii_uppercase();
        if keyword != "COPY" && keyword != "ADD" {
            continue;
        }
        let mut words = arguments(rest.trim());
        if words.iter().any(|w| w.starts_with("--from")) {
            continue;
        }
        words.retain(|w| !w.starts_with("--"));
        words.pop(); // the destination
        sources.extend(words.into_iter().filter(|w| !is_remote(w)));
    }
    sources
}

/// The user of the image's last `USER` instruction (without a group), if
/// it names one other than root: whom the image means the job to run as.
pub fn user(dockerfile: &str) -> Option<String> {
    let user = instructions(dockerfile)
        .iter()
        .rev()
        .find_map(|instruction| {
            let (keyword, rest) = instruction.split_once(char::is_whitespace)?;
            keyword
                .eq_ignore_ascii_case("USER")
                .then(|| rest.trim().to_string())
        })?;
    let name = user
        .split(':')
        .next()
        .unwrap_or_default()
        .trim()
        .to_string();
    (!name.is_empty() && name != "root" && name != "0").then_some(name)
}

/// Logical instructions: comments dropped, backslash continuations joined.
fn instructions(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut current = String::new();
    for line in text.lines() {
        let trimmed = line.trim();
        if trimmed.starts_with('#') || (trimmed.is_empty() && current.is_empty()) {
            continue;
        }
        match trimmed.strip_suffix('\\') {
            Some(part) => {
                current.push_str(part);
                current.push(' ');
            }
            None => {
                current.push_str(trimmed);
                out.push(std::mem::take(&mut current));
            }
        }
    }
    if !current.trim().is_empty() {
        out.push(current);
    }
    out
}

/// JSON form `["a", "b"]` or shell form `a b`.
fn arguments(rest: &str) -> Vec<String> {
    if rest.starts_with('[') {
        if let Some(words) = json_strings(rest) {
            return words;
        }
    }
    argv::split_words(rest).unwrap_or_else(|_| rest.split_whitespace().map(String::from).collect())
}

/// The strings of a JSON array of strings; None if it is not one.
fn json_strings(text: &str) -> Option<Vec<String>> {
    let inner = text.trim().strip_prefix('[')?.strip_suffix(']')?;
    let mut words = Vec::new();
    let mut chars = inner.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| c.is_whitespace() || *c == ',') {
            chars.next();
        }
        match chars.next() {
            None => return Some(words),
            Some('"') => {}
            Some(_) => return None,
        }
        let mut word = String::new();
        loop {
            match chars.next()? {
                '"' => break,
                '\\' => word.push(chars.next()?),
                c => word.push(c),
            }
        }
        words.push(word);
    }
}

fn is_remote(source: &str) -> bool {
    source.contains("://") || source.starts_with("git@")
}

#[cfg(test)]
mod tests {

    #[test]
    fn the_last_user_instruction_names_the_jobs_user() {
        assert_eq!(user("FROM x\nRUN a\n"), None);
        assert_eq!(user("FROM x\nUSER science\n"), Some("science".into()));
        assert_eq!(user("FROM x\nuser 1000:1000\n"), Some("1000".into()));
        assert_eq!(user("FROM x\nUSER app\nUSER root\n"), None);
        assert_eq!(user("FROM x\nUSER 0:0\n"), None);
        assert_eq!(user("FROM x\n# USER app\n"), None);
    }

    use super::*;

    #[test]
    fn copy_and_add_sources() {
        let text = "FROM scratch\n# COPY commented.txt /x\nCOPY busybox /bin/busybox\n\
                    add --chown=1:1 a.txt b.txt /data/\nCOPY [\"with space.txt\", \"/app/\"]\n\
                    COPY --from=build /out /out\nADD https://example.org/x.tgz /x\n\
                    COPY main.sh \\\n     lib/*.sh /app/\nRUN echo COPY nothing\n";
        assert_eq!(
            context_sources(text),
            [
                "busybox",
                "a.txt",
                "b.txt",
                "with space.txt",
                "main.sh",
                "lib/*.sh"
            ]
        );
    }

    #[test]
    fn no_copy_means_no_context() {
        assert!(context_sources("FROM scratch\nCMD [\"/bin/true\"]\n").is_empty());
        assert!(context_sources("").is_empty());
    }

    #[test]
    fn whole_context() {
        assert_eq!(context_sources("COPY . /app"), ["."]);
    }
}

/// Property test: no Dockerfile text makes the source scan panic.
#[cfg(test)]
mod props {
    use super::*;
    use crate::property_tests::config;
    use proptest::collection::vec;
    use proptest::prelude::*;
    use proptest::sample::select;

    const TOKENS: &[&str] = &[
        "COPY ",
        "add ",
        "FROM x\n",
        "RUN y\n",
        "[",
        "]",
        "\"",
        "'",
        "\\",
        "\\\n",
        ",",
        " ",
        "\n",
        "\r\n",
        "#",
        "--from=a ",
        "--chown=1 ",
        "a",
        "b/c",
        "https://x/y",
        "git@h:r",
        "é",
        "\0",
    ];

    proptest! {
        #![proptest_config(config(2048))]

        #[test]
        fn any_dockerfile_can_be_scanned(text in prop_oneof![
            any::<String>(),
            vec(select(TOKENS), 0..60).prop_map(|t| t.concat()),
        ]) {
            let _ = context_sources(&text);
        }
    }
}
