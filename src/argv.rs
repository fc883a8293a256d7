//! Splitting a string into an argument vector with shell-like quoting, without
//! a shell.
//!
//! `job.toml` carries extra engine arguments (`build_args`, `create_args`) as
//! one string, as the C++ wrapper did. The C++ wrapper pasted that string into
//! a shell command line, so quoting worked but so did `$(...)`, `;` and globs.
//! Here the string is only split into words, following the quoting rules of a
//! POSIX shell, and every word becomes one argv element. Nothing is expanded:
//! `$VAR`, `$(cmd)`, backticks, `*`, `~` and `#` stay literal text.
//!
//! Rules:
//! * spaces, tabs, carriage returns and newlines separate words;
//! * `'...'` keeps everything literally up to the next `'`;
//! * `"..."` keeps everything literally, except that a backslash escapes
//!   `"`, `\`, `$` and a backtick (other backslashes stay), and
//!   backslash-newline is removed;
//! * outside quotes, a backslash escapes the next character, and
//!   backslash-newline is a line continuation (removed);
//! * `""` and `''` make an empty word.

use std::fmt;

/// Why a string could not be split into words.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SplitError {
    /// A `'` was opened at this character position (1-based) and never closed.
    UnterminatedSingleQuote { position: usize },
    /// A `"` was opened at this character position (1-based) and never closed.
    UnterminatedDoubleQuote { position: usize },
    /// The text ends with a backslash that has nothing to escape.
    TrailingBackslash,
}

impl fmt::Display for SplitError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SplitError::UnterminatedSingleQuote { position } => {
                write!(
                    f,
                    "unterminated single quote (opened at character {position})"
                )
            }
            SplitError::UnterminatedDoubleQuote { position } => {
                write!(
                    f,
                    "unterminated double quote (opened at character {position})"
                )
            }
            SplitError::TrailingBackslash => write!(f, "trailing backslash with nothing to escape"),
        }
    }
}

impl std::error::Error for SplitError {}

/// Characters that separate words outside quotes.
fn is_separator(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\n' | '\r')
}

/// Characters a backslash escapes inside double quotes (as in a POSIX shell).
fn escapable_in_double_quotes(c: char) -> bool {
    matches!(c, '"' | '\\' | '$' | '`')
}

/// Splits `text` into words (see the module documentation for the rules).
pub fn split_words(text: &str) -> Result<Vec<String>, SplitError> {
    let mut words = Vec::new();
    let mut word = String::new();
    // Tracked apart from `word.is_empty()` so that `""` yields an empty word.
    let mut in_word = false;
    let mut chars = text.chars().enumerate().peekable();

    while let Some((index, c)) = chars.next() {
        match c {
            c if is_separator(c) => {
                if in_word {
                    words.push(std::mem::take(&mut word));
                    in_word = false;
                }
            }
            '\\' => match chars.next() {
                None => return Err(SplitError::TrailingBackslash),
                Some((_, '\n')) => {}
                // A continuation written with CRLF line endings.
                Some((_, '\r')) if matches!(chars.peek(), Some((_, '\n'))) => {
                    chars.next();
                }
                Some((_, escaped)) => {
                    word.push(escaped);
                    in_word = true;
                }
            },
            '\'' => {
                in_word = true;
                loop {
                    match chars.next() {
                        None => {
                            return Err(SplitError::UnterminatedSingleQuote {
                                position: index + 1,
                            })
                        }
                        Some((_, '\'')) => break,
                        Some((_, quoted)) => word.push(quoted),
                    }
                }
            }
            '"' => {
                in_word = true;
                loop {
                    match chars.next() {
                        None => {
                            return Err(SplitError::UnterminatedDoubleQuote {
                                position: index + 1,
                            })
                        }
                        Some((_, '"')) => break,
                        Some((_, '\\')) => match chars.peek() {
                            Some(&(_, '\n')) => {
                                chars.next();
                            }
                            Some(&(_, next)) if escapable_in_double_quotes(next) => {
                                word.push(next);
                                chars.next();
                            }
                            // Any other backslash is literal; an unterminated
                            // quote is reported on the next turn.
                            _ => word.push('\\'),
                        },
                        Some((_, quoted)) => word.push(quoted),
                    }
                }
            }
            other => {
                word.push(other);
                in_word = true;
            }
        }
    }
    if in_word {
        words.push(word);
    }
    Ok(words)
}

/// Quotes one word so that [`split_words`] gives it back unchanged; words made
/// only of plainly safe characters are left as they are. Used to show argument
/// lists to people in a form they can paste back.
pub fn quote_word(word: &str) -> String {
    let plain = !word.is_empty()
        && word
            .chars()
            .all(|c| c.is_alphanumeric() || "-_./:=,+@%".contains(c));
    if plain {
        word.to_string()
    } else {
        // Inside single quotes everything is literal except `'` itself, which
        // is written as: close quote, escaped quote, reopen quote.
        format!("'{}'", word.replace('\'', r"'\''"))
    }
}

/// Joins words with [`quote_word`], separated by single spaces.
pub fn join_words<S: AsRef<str>>(words: &[S]) -> String {
    words
        .iter()
        .map(|w| quote_word(w.as_ref()))
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(text: &str) -> Vec<String> {
        split_words(text).unwrap_or_else(|e| panic!("split_words({text:?}) failed: {e}"))
    }

    #[test]
    fn empty_and_blank_give_no_words() {
        assert!(split("").is_empty());
        assert!(split("   \t\n\r\n ").is_empty());
    }

    #[test]
    fn whitespace_separates_words() {
        assert_eq!(split("  a  b\tc\nd\r\ne  "), ["a", "b", "c", "d", "e"]);
    }

    #[test]
    fn quoted_label_and_command_substitution_stay_literal() {
        assert_eq!(
            split(r#"--label "a b" -e 'X=$(rm -rf /)'"#),
            ["--label", "a b", "-e", "X=$(rm -rf /)"]
        );
    }

    #[test]
    fn nothing_is_expanded() {
        assert_eq!(
            split("$HOME ~ *.txt `id` $(id) ${X} a;b a|b a&&b #c"),
            ["$HOME", "~", "*.txt", "`id`", "$(id)", "${X}", "a;b", "a|b", "a&&b", "#c"]
        );
        assert_eq!(split(r#""$HOME $(id)""#), ["$HOME $(id)"]);
    }

    #[test]
    fn single_quotes_are_fully_literal() {
        assert_eq!(split(r#"'a \ " $ ` b'"#), [r#"a \ " $ ` b"#]);
        assert_eq!(split("'line1\nline2'"), ["line1\nline2"]);
    }

    #[test]
    fn double_quote_escapes() {
        assert_eq!(split(r#""a\"b""#), [r#"a"b"#]);
        assert_eq!(split(r#""a\\b""#), [r"a\b"]);
        assert_eq!(split(r#""\$X""#), ["$X"]);
        assert_eq!(split(r#""\`""#), ["`"]);
        // Other backslashes stay as they are.
        assert_eq!(split(r#""a\nb\'""#), [r"a\nb\'"]);
        assert_eq!(split("\"a\\\nb\""), ["ab"]);
    }

    #[test]
    fn backslash_outside_quotes() {
        assert_eq!(split(r"a\ b"), ["a b"]);
        assert_eq!(split(r"\'x\'"), ["'x'"]);
        assert_eq!(split(r#"\"\\"#), [r#""\"#]);
        assert_eq!(split("a\\\nb"), ["ab"]);
        assert_eq!(split("a \\\n b"), ["a", "b"]);
        assert_eq!(split("a \\\r\n b"), ["a", "b"]);
    }

    #[test]
    fn adjacent_parts_join_into_one_word() {
        assert_eq!(split(r#"a'b c'"d e"f"#), ["ab cd ef"]);
        assert_eq!(split(r#"--opt="x y""#), ["--opt=x y"]);
    }

    #[test]
    fn empty_quotes_make_empty_words() {
        assert_eq!(split(r#"a "" b ''"#), ["a", "", "b", ""]);
    }

    #[test]
    fn unicode_is_kept() {
        assert_eq!(split("héllo '世界 🌍' \"ÄÖ\""), ["héllo", "世界 🌍", "ÄÖ"]);
        // A no-break space is not a separator.
        assert_eq!(split("a\u{a0}b"), ["a\u{a0}b"]);
    }

    #[test]
    fn errors_say_what_is_wrong() {
        assert_eq!(
            split_words("a 'b c"),
            Err(SplitError::UnterminatedSingleQuote { position: 3 })
        );
        assert_eq!(
            split_words("é \"b"),
            Err(SplitError::UnterminatedDoubleQuote { position: 3 })
        );
        assert_eq!(
            split_words(r#""a\""#),
            Err(SplitError::UnterminatedDoubleQuote { position: 1 })
        );
        assert_eq!(
            split_words(r#""a\"#),
            Err(SplitError::UnterminatedDoubleQuote { position: 1 })
        );
        assert_eq!(split_words("a\\"), Err(SplitError::TrailingBackslash));
        assert!(split_words("'x")
            .unwrap_err()
            .to_string()
            .contains("single quote"));
        assert!(split_words("\"x")
            .unwrap_err()
            .to_string()
            .contains("double quote"));
        assert!(split_words("x\\")
            .unwrap_err()
            .to_string()
            .contains("backslash"));
    }

    #[test]
    fn quote_word_round_trips() {
        let samples: Vec<Vec<&str>> = vec![
            vec![],
            vec![""],
            vec!["plain", "--opt=1", "/a/b.c"],
            vec![
                "a b",
                "it's",
                "$(rm -rf /)",
                "\"",
                "\\",
                "x\ny",
                "tab\there",
                "é 世界",
                "''",
            ],
        ];
        for words in samples {
            let joined = join_words(&words);
            assert_eq!(split(&joined), words, "joined as {joined}");
        }
        assert_eq!(quote_word("--cpus=2"), "--cpus=2");
        assert_eq!(quote_word("a b"), "'a b'");
        assert_eq!(quote_word("it's"), r"'it'\''s'");
    }
}

/// Property tests: any text splits or gives a reason, and an argument vector
/// quoted by the documented rules splits back into itself.
#[cfg(test)]
mod props {
    use super::*;
    use crate::property_tests::{check_message, config};
    use proptest::collection::vec;
    use proptest::prelude::*;
    use proptest::sample::select;

    /// Characters with a meaning to the splitter or to a shell, and others.
    fn any_char() -> impl Strategy<Value = char> {
        prop_oneof![
            3 => any::<char>(),
            4 => select(vec![
                ' ', '\t', '\n', '\r', '\'', '"', '\\', '$', '`', '(', ')', ';', '*', '#', '~',
                '\0', '\u{a0}', 'é',
            ]),
            3 => prop::char::range('a', 'z'),
        ]
    }

    fn word() -> impl Strategy<Value = String> {
        vec(any_char(), 0..12).prop_map(|c| c.into_iter().collect())
    }

    /// The ways the module documentation allows to write a piece of a word.
    #[derive(Debug, Clone, Copy)]
    enum Quoting {
        /// `quote_word`'s choice.
        QuoteWord,
        /// `'...'`, with `'` written as `'\''`.
        Single,
        /// `"..."`, with `"`, `\`, `$` and backtick escaped.
        Double,
        /// A backslash before each character; newline and carriage return
        /// (which would make a line continuation) in single quotes.
        Backslashes,
    }

    fn quote(piece: &str, how: Quoting) -> String {
        match how {
            Quoting::QuoteWord => quote_word(piece),
            Quoting::Single => format!("'{}'", piece.replace('\'', r"'\''")),
            Quoting::Double => {
                let mut out = String::from("\"");
                for c in piece.chars() {
                    if escapable_in_double_quotes(c) {
                        out.push('\\');
                    }
                    out.push(c);
                }
                out.push('"');
                out
            }
            Quoting::Backslashes if piece.is_empty() => "''".to_string(),
            Quoting::Backslashes => piece
                .chars()
                .map(|c| match c {
                    '\n' | '\r' => format!("'{c}'"),
                    c => format!("\\{c}"),
                })
                .collect(),
        }
    }

    fn quoting() -> impl Strategy<Value = Quoting> {
        select(vec![
            Quoting::QuoteWord,
            Quoting::Single,
            Quoting::Double,
            Quoting::Backslashes,
        ])
    }

    /// A word cut into pieces, each quoted its own way; adjacent pieces join.
    fn quoted_word() -> impl Strategy<Value = (String, String)> {
        vec((word(), quoting()), 1..4).prop_map(|pieces| {
            let word: String = pieces.iter().map(|(p, _)| p.as_str()).collect();
            let quoted = pieces.iter().map(|(p, how)| quote(p, *how)).collect();
            (word, quoted)
        })
    }

    proptest! {
        #![proptest_config(config(4096))]

        #[test]
        fn any_text_splits_or_says_why(text in prop_oneof![
            any::<String>(),
            vec(any_char(), 0..64).prop_map(|c| c.into_iter().collect()),
        ]) {
            match split_words(&text) {
                Ok(words) => {
                    // Splitting only removes characters, never adds any.
                    let kept: usize = words.iter().map(|w| w.chars().count()).sum();
                    prop_assert!(kept <= text.chars().count());
                }
                Err(e) => check_message(&e.to_string())?,
            }
        }

        #[test]
        fn join_words_splits_back(words in vec(word(), 0..8)) {
            let joined = join_words(&words);
            prop_assert_eq!(split_words(&joined), Ok(words), "joined as {}", joined);
        }

        #[test]
        fn quoted_argv_splits_back(
            words in vec(quoted_word(), 0..8),
            separators in vec(select(vec![" ", "  ", "\t", "\n", "\r\n", " \\\n "]), 8),
            lead in select(vec!["", " ", "\n"]),
            trail in select(vec!["", " ", "\n", "\\\n"]),
        ) {
            let mut text = lead.to_string();
            for (i, (_, quoted)) in words.iter().enumerate() {
                if i > 0 {
                    text.push_str(separators[i - 1]);
                }
                text.push_str(quoted);
            }
            text.push_str(trail);
            let argv: Vec<String> = words.into_iter().map(|(w, _)| w).collect();
            prop_assert_eq!(split_words(&text), Ok(argv), "from {:?}", text);
        }
    }
}
