//! What the client recorded about a result in `client_state.xml`.
//!
//! The client rewrites the file atomically (client_state_next.xml, then a
//! rename) whenever its state changed, within about a second, so reading it
//! while the client runs is safe.

use std::fmt;

/// `RESULT_*` in BOINC's lib/common_defs.h (7.20).
pub const RESULT_FILES_DOWNLOADED: i32 = 2;
pub const RESULT_COMPUTE_ERROR: i32 = 3;
pub const RESULT_FILES_UPLOADING: i32 = 4;
pub const RESULT_FILES_UPLOADED: i32 = 5;
pub const RESULT_ABORTED: i32 = 6;
pub const RESULT_UPLOAD_FAILED: i32 = 7;

/// EXIT_ABORTED_VIA_GUI in BOINC's lib/error_numbers.h: the exit status of a
/// result aborted with `boinccmd --task ... abort`.
pub const EXIT_ABORTED_VIA_GUI: i32 = 203;

pub fn state_name(state: i32) -> &'static str {
    match state {
        0 => "new",
        1 => "downloading",
        RESULT_FILES_DOWNLOADED => "files downloaded",
        RESULT_COMPUTE_ERROR => "compute error",
        RESULT_FILES_UPLOADING => "uploading",
        RESULT_FILES_UPLOADED => "done (files uploaded)",
        RESULT_ABORTED => "aborted",
        RESULT_UPLOAD_FAILED => "upload failed",
        _ => "unknown",
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct ResultRecord {
    pub state: i32,
    pub exit_status: i32,
    /// The contents of `<stderr_out>` without the CDATA markers: the slot's
    /// stderr.txt as `<stderr_txt>...</stderr_txt>`, plus the client's messages.
    pub stderr_out: String,
}

impl ResultRecord {
    /// A state the result leaves only by being reported to a server.
    pub fn is_final(&self) -> bool {
        matches!(
            self.state,
            RESULT_COMPUTE_ERROR | RESULT_FILES_UPLOADED | RESULT_ABORTED | RESULT_UPLOAD_FAILED
        )
    }
}

impl fmt::Display for ResultRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "state {} ({}), exit_status {}",
            self.state,
            state_name(self.state),
            self.exit_status
        )
    }
}

/// The `<result>` named `name` in the text of client_state.xml.
pub fn find_result(xml: &str, name: &str) -> Option<ResultRecord> {
    let wanted = format!("<name>{name}</name>");
    let mut rest = xml;
    while let Some(start) = rest.find("<result>") {
        let after = &rest[start + "<result>".len()..];
        let end = after.find("</result>")?;
        let block = &after[..end];
        rest = &after[end..];
        // The result's own <name> comes first; <file_ref>s hold <file_name>, not <name>.
        if block.trim_start().starts_with(&wanted) {
            return Some(ResultRecord {
                state: element(block, "state")?.trim().parse().ok()?,
                exit_status: element(block, "exit_status")
                    .and_then(|s| s.trim().parse().ok())
                    .unwrap_or(0),
                stderr_out: element(block, "stderr_out")
                    .map(strip_cdata)
                    .unwrap_or_default(),
            });
        }
    }
    None
}

/// The text between `<tag>` and the next `</tag>`.
fn element<'a>(block: &'a str, tag: &str) -> Option<&'a str> {
    let open = format!("<{tag}>");
    let close = format!("</{tag}>");
    let start = block.find(&open)? + open.len();
    let len = block[start..].find(&close)?;
    Some(&block[start..start + len])
}

fn strip_cdata(text: &str) -> String {
    let text = text.trim();
    text.strip_prefix("<![CDATA[")
        .and_then(|t| t.strip_suffix("]]>"))
        .unwrap_or(text)
        .trim()
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_state_exit_status_and_stderr() {
        let xml = "<client_state>\n<result>\n    <name>other</name>\n    <state>2</state>\n</result>\n\
                   <result>\n    <name>r_0</name>\n    <final_cpu_time>0.1</final_cpu_time>\n    <exit_status>3</exit_status>\n\
                   <state>3</state>\n<stderr_out>\n<![CDATA[\n<stderr_txt>\nboom\n</stderr_txt>\n]]>\n</stderr_out>\n\
                   <file_ref>\n<file_name>r_0_out</file_name>\n</file_ref>\n</result>\n</client_state>\n";
        let r = find_result(xml, "r_0").unwrap();
        assert_eq!((r.state, r.exit_status), (3, 3));
        assert_eq!(r.stderr_out, "<stderr_txt>\nboom\n</stderr_txt>");
        assert_eq!(find_result(xml, "other").unwrap().state, 2);
        assert_eq!(find_result(xml, "r"), None);
    }
}
