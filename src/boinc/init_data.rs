//! Parser for BOINC's `init_data.xml`, the file the client writes into a
//! task's slot directory before starting the application.
//!
//! The format is produced by `write_init_data_file` in BOINC's
//! `lib/app_ipc.cpp` with plain `printf`s, so it is XML in shape but not
//! always in rigour: booleans are written as `<tag/>` or `<tag>0|1</tag>`,
//! some strings are escaped byte by byte, and `<project_preferences>` holds
//! whatever the project sent. The parser therefore:
//!
//! * interprets only the fields this wrapper needs and skips everything else,
//!   however deeply nested, with a depth counter (never recursion), so hostile
//!   nesting cannot overflow the stack;
//! * checks tag balance strictly for the elements it interprets, but only
//!   counts depth inside the elements it skips, so a project's sloppy
//!   preferences cannot break a job;
//! * reports a bad number as [`InitDataError::BadValue`] naming the tag, rather
//!   than silently using 0 as the C++ parser does.
//!
//! Clients older than 8.0 (e.g. Debian 12's 7.20) write no Docker fields at
//! all; every such field then keeps its default and callers must detect the
//! container engine themselves.

use std::borrow::Cow;
use std::fmt;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use quick_xml::events::Event;
use quick_xml::Reader;

use crate::engine::{self, EngineKind};

/// A slot's `init_data.xml` is a few kilobytes; anything this large is not
/// one, and reading it whole could exhaust memory.
const MAX_FILE_BYTES: u64 = 4 * 1024 * 1024;

/// Error values echo at most this many characters of the offending text.
const MAX_ECHOED_CHARS: usize = 60;

/// Container engine reported by the client (BOINC's `DOCKER_TYPE` enum).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DockerType {
    #[default]
    None,
    Docker,
    Podman,
}

impl DockerType {
    /// The engine the client detected (BOINC 8.2); None when it names none
    /// (7.20 clients write no docker fields).
    pub fn engine_kind(self) -> Option<EngineKind> {
        match self {
            DockerType::Docker => Some(EngineKind::Docker),
            DockerType::Podman => Some(EngineKind::Podman),
            DockerType::None => None,
        }
    }

    /// Maps the client's integer code; unknown codes (a newer client with a
    /// new engine) are treated as "no engine" so that we fall back to our own
    /// detection instead of failing.
    fn from_code(code: i32, tag: &str) -> DockerType {
        match code {
            0 => DockerType::None,
            1 => DockerType::Docker,
            2 => DockerType::Podman,
            other => {
                log::warn!(
                    "init_data.xml: <{tag}> has unknown engine code {other}; treating it as no engine"
                );
                DockerType::None
            }
        }
    }
}

/// One WSL distribution on a Windows host (BOINC's `WSL_DISTRO`): what
/// choosing the distro to run the engine in needs.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct WslDistro {
    pub distro_name: String,
    /// Written as `<distro_version>`: the version of the BOINC WSL distro
    /// ("boinc-buda-runner"), 0 for other distros.
    pub boinc_buda_runner_version: i32,
    pub disallowed: bool,
    pub docker_version: String,
    pub docker_type: DockerType,
}

/// The subset of the client's `<host_info>` the wrapper uses.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct HostInfo {
    pub docker_type: DockerType,
    /// Windows only: the `<wsl>` list.
    pub wsl_distros: Vec<WslDistro>,
}

impl HostInfo {
    /// The WSL distros, as the engine's choice of one to run in sees them.
    pub fn engine_distros(&self) -> Vec<engine::WslDistro> {
        let for_engine = |d: &WslDistro| engine::WslDistro {
            name: d.distro_name.clone(),
            engine: d.docker_type.engine_kind(),
            engine_version: d.docker_version.clone(),
            disallowed: d.disallowed,
            boinc_runner_version: d.boinc_buda_runner_version,
        };
        self.wsl_distros.iter().map(for_engine).collect()
    }
}

/// The client's proxy settings (BOINC's `PROXY_INFO`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ProxyInfo {
    pub use_http_proxy: bool,
    pub use_socks_proxy: bool,
    pub socks_server_name: String,
    pub socks_server_port: i32,
    pub http_server_name: String,
    pub http_server_port: i32,
    pub socks5_user_name: String,
    pub socks5_user_passwd: String,
    pub socks5_remote_dns: bool,
    pub http_user_name: String,
    pub http_user_passwd: String,
    pub no_proxy: String,
}

/// The fields of `init_data.xml` the wrapper uses. Absent fields keep their
/// `Default` value.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct InitData {
    pub project_dir: String,
    pub boinc_dir: String,
    pub wu_name: String,
    pub result_name: String,
    pub wu_cpu_time: f64,
    /// The task's running time (wall clock, suspensions excluded) before
    /// this run, as the client counts it.
    pub starting_elapsed_time: f64,
    /// Kept exactly as written (0 when absent); callers treat a value <= 0
    /// as 1 CPU.
    pub ncpus: f64,
    pub rsc_memory_bound: f64,
    pub rsc_disk_bound: f64,
    pub gpu_type: String,
    pub gpu_device_num: i32,
    pub host_info: HostInfo,
    /// `Some` whenever the file has a `<proxy_info>` block (7.20 clients
    /// always write one, 8.x clients only when a proxy is configured).
    pub proxy_info: Option<ProxyInfo>,
}

/// Why `init_data.xml` could not be used.
#[derive(Debug)]
pub enum InitDataError {
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    TooLarge {
        path: PathBuf,
        bytes: u64,
    },
    /// Malformed XML; the text gives the position and what is wrong.
    Xml(String),
    BadValue {
        tag: String,
        value: String,
        expected: &'static str,
    },
    MissingRoot,
}

impl fmt::Display for InitDataError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            InitDataError::Io { path, source } => {
                write!(
                    f,
                    "cannot read BOINC init data file {}: {source}",
                    path.display()
                )
            }
            InitDataError::TooLarge { path, bytes } => write!(
                f,
                "BOINC init data file {} is {bytes} bytes, more than the {} MiB an init_data.xml \
                 can plausibly be; refusing to read it",
                path.display(),
                MAX_FILE_BYTES / (1024 * 1024)
            ),
            InitDataError::Xml(what) => write!(f, "init_data.xml is not well-formed XML: {what}"),
            InitDataError::BadValue {
                tag,
                value,
                expected,
            } => {
                // `tag` is a path such as "host_info/wsl/distro/docker_type".
                let (name, parents) = match tag.rsplit_once('/') {
                    Some((parents, name)) => (name, format!(" (inside {parents})")),
                    None => (tag.as_str(), String::new()),
                };
                write!(
                    f,
                    "init_data.xml: <{name}>{parents} contains {value:?}, but {expected} was expected"
                )
            }
            InitDataError::MissingRoot => write!(
                f,
                "init_data.xml does not start with an <app_init_data> element \
                 (the file is empty, truncated, or not written by a BOINC client)"
            ),
        }
    }
}

impl std::error::Error for InitDataError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            InitDataError::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}

type Result<T> = std::result::Result<T, InitDataError>;

impl InitData {
    /// Parses the text of an `init_data.xml`.
    pub fn parse(xml: &str) -> Result<InitData> {
        let xml = xml.strip_prefix('\u{feff}').unwrap_or(xml);
        let mut cur = Cursor::new(xml);
        let root = loop {
            match cur.next()? {
                Item::Open(name) if name == "app_init_data" => break Elem::new(name, None, false),
                Item::Empty(name) if name == "app_init_data" => break Elem::new(name, None, true),
                // Stray text before the root (e.g. whitespace) is harmless.
                Item::Text(_) | Item::CData(_) => continue,
                _ => return Err(InitDataError::MissingRoot),
            }
        };
        // Whatever follows `</app_init_data>` is ignored, as the client's own
        // parser does.
        parse_app_init_data(&mut cur, &root)
    }

    /// Reads and parses `path`. Files over 4 MiB are refused before being
    /// read; bytes that are not UTF-8 (a project directory in a legacy
    /// Windows code page) are replaced rather than rejected.
    pub fn load(path: &Path) -> Result<InitData> {
        let io_err = |source| InitDataError::Io {
            path: path.to_path_buf(),
            source,
        };
        let too_large = |bytes| InitDataError::TooLarge {
            path: path.to_path_buf(),
            bytes,
        };
        // The client writes it before each start, but into the slot, where
        // the job may have left a FIFO or a link under that name.
        let file = crate::slot::io::open_regular(path).map_err(io_err)?;
        let declared = file.metadata().map_err(io_err)?.len();
        if declared > MAX_FILE_BYTES {
            return Err(too_large(declared));
        }
        // The size can change after the check (or be meaningless for a special
        // file), so bound the read itself as well.
        let mut bytes = Vec::with_capacity(declared as usize);
        file.take(MAX_FILE_BYTES + 1)
            .read_to_end(&mut bytes)
            .map_err(io_err)?;
        if bytes.len() as u64 > MAX_FILE_BYTES {
            return Err(too_large(bytes.len() as u64));
        }
        InitData::parse(&String::from_utf8_lossy(&bytes))
    }

    /// Last path component of `project_dir`: the escaped project URL, e.g.
    /// "boinc.berkeley.edu_central". Both '/' and '\\' separate components so
    /// Windows paths work too; trailing separators are ignored.
    pub fn project_dir_name(&self) -> &str {
        let dir = self.project_dir.trim_end_matches(['/', '\\']);
        dir.rsplit(['/', '\\']).next().unwrap_or("")
    }

    /// Proxy environment variables for the engine and the container, with
    /// the C++ docker_wrapper's meaning: an HTTP proxy takes precedence over
    /// a SOCKS one; the proxy URL goes into `http_proxy`, `https_proxy` and
    /// `HTTPS_PROXY` (not `HTTP_PROXY`, as in the C++ wrapper: CGI programs
    /// fill that name from a request header, the "httpoxy" problem);
    /// `no_proxy`/`NO_PROXY` are set whenever the client has a no-proxy list.
    ///
    /// Unlike the C++ wrapper, credentials are percent-encoded so that a
    /// password containing '@', ':' or '%' still yields a valid URL, IPv6
    /// hosts are bracketed, and a port <= 0 is omitted (the client treats it
    /// as "default port").
    pub fn proxy_env(&self) -> Vec<(String, String)> {
        let Some(pi) = &self.proxy_info else {
            return Vec::new();
        };
        let mut env = Vec::new();
        if let Some(url) = proxy_url(pi) {
            for name in ["http_proxy", "https_proxy", "HTTPS_PROXY"] {
                env.push((name.to_string(), url.clone()));
            }
        }
        if !pi.no_proxy.is_empty() {
            for name in ["no_proxy", "NO_PROXY"] {
                env.push((name.to_string(), pi.no_proxy.clone()));
            }
        }
        env
    }
}

/// The proxy URL the client would use, if any.
fn proxy_url(pi: &ProxyInfo) -> Option<String> {
    if pi.use_http_proxy && !pi.http_server_name.is_empty() {
        let auth = userinfo(&pi.http_user_name, &pi.http_user_passwd);
        Some(format!(
            "http://{auth}{}",
            host_port(&pi.http_server_name, pi.http_server_port)
        ))
    } else if pi.use_socks_proxy && !pi.socks_server_name.is_empty() {
        // socks5h: the proxy resolves host names, as the user asked.
        let scheme = if pi.socks5_remote_dns {
            "socks5h"
        } else {
            "socks5"
        };
        let auth = userinfo(&pi.socks5_user_name, &pi.socks5_user_passwd);
        Some(format!(
            "{scheme}://{auth}{}",
            host_port(&pi.socks_server_name, pi.socks_server_port)
        ))
    } else {
        None
    }
}

/// "user:pass@" or "" when there is no user name (the C++ wrapper's rule).
fn userinfo(user: &str, password: &str) -> String {
    if user.is_empty() {
        String::new()
    } else {
        format!("{}:{}@", percent_encode(user), percent_encode(password))
    }
}

fn host_port(host: &str, port: i32) -> String {
    let host = if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]")
    } else {
        host.to_string()
    };
    if port > 0 {
        format!("{host}:{port}")
    } else {
        host
    }
}

/// Encodes everything but RFC 3986 "unreserved" characters.
fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

// ---------------------------------------------------------------------------
// Element handlers: one per element whose children we interpret. Each returns
// `Ok(false)` for a child it does not know, which the caller then skips.

fn parse_app_init_data(cur: &mut Cursor<'_>, root: &Elem) -> Result<InitData> {
    let mut d = InitData::default();
    cur.for_each_child(root, |cur, e| {
        match e.name.as_str() {
            "project_dir" => d.project_dir = cur.string(e)?,
            "boinc_dir" => d.boinc_dir = cur.string(e)?,
            "wu_name" => d.wu_name = cur.string(e)?,
            "result_name" => d.result_name = cur.string(e)?,
            "wu_cpu_time" => d.wu_cpu_time = cur.number(e)?,
            "starting_elapsed_time" => d.starting_elapsed_time = cur.number(e)?,
            "ncpus" => d.ncpus = cur.number(e)?,
            "rsc_memory_bound" => d.rsc_memory_bound = cur.number(e)?,
            "rsc_disk_bound" => d.rsc_disk_bound = cur.number(e)?,
            "gpu_type" => d.gpu_type = cur.string(e)?,
            "gpu_device_num" => d.gpu_device_num = cur.number(e)?,
            "host_info" => d.host_info = parse_host_info(cur, e)?,
            "proxy_info" => d.proxy_info = Some(parse_proxy_info(cur, e)?),
            _ => return Ok(false),
        }
        Ok(true)
    })?;
    Ok(d)
}

fn parse_host_info(cur: &mut Cursor<'_>, elem: &Elem) -> Result<HostInfo> {
    let mut h = HostInfo::default();
    cur.for_each_child(elem, |cur, e| {
        match e.name.as_str() {
            "docker_type" => h.docker_type = cur.docker_type(e)?,
            "wsl" => h.wsl_distros.extend(parse_wsl(cur, e)?),
            _ => return Ok(false),
        }
        Ok(true)
    })?;
    Ok(h)
}

fn parse_wsl(cur: &mut Cursor<'_>, elem: &Elem) -> Result<Vec<WslDistro>> {
    let mut distros = Vec::new();
    cur.for_each_child(elem, |cur, e| {
        if e.name != "distro" {
            return Ok(false);
        }
        distros.push(parse_distro(cur, e)?);
        Ok(true)
    })?;
    Ok(distros)
}

fn parse_distro(cur: &mut Cursor<'_>, elem: &Elem) -> Result<WslDistro> {
    let mut w = WslDistro::default();
    cur.for_each_child(elem, |cur, e| {
        match e.name.as_str() {
            "distro_name" => w.distro_name = cur.string(e)?,
            "distro_version" => w.boinc_buda_runner_version = cur.number(e)?,
            "disallowed" => w.disallowed = cur.boolean(e)?,
            "docker_version" => w.docker_version = cur.string(e)?,
            "docker_type" => w.docker_type = cur.docker_type(e)?,
            _ => return Ok(false),
        }
        Ok(true)
    })?;
    Ok(w)
}

fn parse_proxy_info(cur: &mut Cursor<'_>, elem: &Elem) -> Result<ProxyInfo> {
    let mut p = ProxyInfo::default();
    cur.for_each_child(elem, |cur, e| {
        match e.name.as_str() {
            "use_http_proxy" => p.use_http_proxy = cur.boolean(e)?,
            "use_socks_proxy" => p.use_socks_proxy = cur.boolean(e)?,
            "socks_server_name" => p.socks_server_name = cur.string(e)?,
            "socks_server_port" => p.socks_server_port = cur.number(e)?,
            "http_server_name" => p.http_server_name = cur.string(e)?,
            "http_server_port" => p.http_server_port = cur.number(e)?,
            "socks5_user_name" => p.socks5_user_name = cur.string(e)?,
            "socks5_user_passwd" => p.socks5_user_passwd = cur.string(e)?,
            "socks5_remote_dns" => p.socks5_remote_dns = cur.boolean(e)?,
            "http_user_name" => p.http_user_name = cur.string(e)?,
            "http_user_passwd" => p.http_user_passwd = cur.string(e)?,
            "no_proxy" => p.no_proxy = cur.string(e)?,
            _ => return Ok(false),
        }
        Ok(true)
    })?;
    Ok(p)
}

// ---------------------------------------------------------------------------
// A thin cursor over quick-xml's pull reader.

/// The XML constructs the handlers care about; comments, declarations,
/// processing instructions and DOCTYPEs are dropped.
enum Item<'a> {
    Open(String),
    Empty(String),
    Close(String),
    Text(Cow<'a, [u8]>),
    CData(Cow<'a, [u8]>),
    Eof,
}

/// An element whose start tag has just been read.
struct Elem {
    name: String,
    /// Slash-separated path from below the root, e.g. "host_info/p_ncpus",
    /// so that errors say which of several same-named tags is wrong.
    path: String,
    /// `<tag/>`: there is no content and no end tag to consume.
    empty: bool,
}

impl Elem {
    fn new(name: String, parent: Option<&Elem>, empty: bool) -> Elem {
        let path = match parent {
            Some(p) if p.name != "app_init_data" => format!("{}/{name}", p.path),
            _ => name.clone(),
        };
        Elem { name, path, empty }
    }
}

/// Numeric field types, with the wording used when their text is invalid.
trait Number: FromStr {
    const EXPECTED: &'static str;
    fn acceptable(&self) -> bool {
        true
    }
}

impl Number for i32 {
    const EXPECTED: &'static str = "a whole number";
}

impl Number for f64 {
    const EXPECTED: &'static str = "a finite number";
    // "inf"/"nan" parse as f64 but would turn into nonsense resource limits.
    fn acceptable(&self) -> bool {
        self.is_finite()
    }
}

struct Cursor<'a> {
    reader: Reader<&'a [u8]>,
    src: &'a str,
    /// Byte offset where the last item read began, for error positions.
    item_start: u64,
}

impl<'a> Cursor<'a> {
    fn new(src: &'a str) -> Cursor<'a> {
        let mut reader = Reader::from_str(src);
        let config = reader.config_mut();
        config.trim_text(false);
        config.expand_empty_elements = false;
        // End tags are matched by the handlers themselves, which lets skipped
        // content (project preferences) be sloppy without failing the job.
        config.check_end_names = false;
        Cursor {
            reader,
            src,
            item_start: 0,
        }
    }

    fn next(&mut self) -> Result<Item<'a>> {
        loop {
            self.item_start = self.reader.buffer_position();
            let event = match self.reader.read_event() {
                Ok(event) => event,
                Err(e) => {
                    let at = self.reader.error_position();
                    // quick-xml's messages quote tag names, which can be
                    // anything; keep room for the words around them.
                    let what = echo(&e.to_string(), 4 * MAX_ECHOED_CHARS);
                    return Err(self.malformed_at(at, &what));
                }
            };
            return Ok(match event {
                Event::Start(s) => Item::Open(lossy(s.name().as_ref())),
                Event::Empty(s) => Item::Empty(lossy(s.name().as_ref())),
                Event::End(e) => Item::Close(lossy(e.name().as_ref())),
                Event::Text(t) => Item::Text(t.into_inner()),
                Event::CData(c) => Item::CData(c.into_inner()),
                Event::Eof => Item::Eof,
                Event::Comment(_) | Event::Decl(_) | Event::PI(_) | Event::DocType(_) => continue,
            });
        }
    }

    /// Calls `handle` for every child element of `parent` until its end tag.
    /// Children the handler does not recognise are skipped; text between
    /// children is ignored.
    fn for_each_child<F>(&mut self, parent: &Elem, mut handle: F) -> Result<()>
    where
        F: FnMut(&mut Self, &Elem) -> Result<bool>,
    {
        if parent.empty {
            return Ok(());
        }
        loop {
            let child = match self.next()? {
                Item::Open(name) => Elem::new(name, Some(parent), false),
                Item::Empty(name) => Elem::new(name, Some(parent), true),
                Item::Close(name) => return self.expect_close(parent, &name),
                Item::Text(_) | Item::CData(_) => continue,
                Item::Eof => return Err(self.truncated(parent)),
            };
            if !handle(self, &child)? {
                self.skip(&child)?;
            }
        }
    }

    /// Consumes an element without interpreting it. Only depth is tracked,
    /// so nesting costs no stack and mismatched names inside are tolerated.
    fn skip(&mut self, elem: &Elem) -> Result<()> {
        if elem.empty {
            return Ok(());
        }
        let mut depth = 1usize;
        loop {
            match self.next()? {
                Item::Open(_) => depth += 1,
                Item::Close(_) => {
                    depth -= 1;
                    if depth == 0 {
                        return Ok(());
                    }
                }
                Item::Eof => return Err(self.truncated(elem)),
                Item::Empty(_) | Item::Text(_) | Item::CData(_) => {}
            }
        }
    }

    /// The element's text content, unescaped and trimmed. Child elements
    /// inside it are skipped.
    fn string(&mut self, elem: &Elem) -> Result<String> {
        if elem.empty {
            return Ok(String::new());
        }
        let mut parts = Vec::new();
        loop {
            match self.next()? {
                Item::Text(t) => parts.push(Piece::Escaped(t)),
                Item::CData(c) => parts.push(Piece::Verbatim(c)),
                Item::Open(name) => self.skip(&Elem::new(name, Some(elem), false))?,
                Item::Empty(_) => {}
                Item::Close(name) => {
                    self.expect_close(elem, &name)?;
                    return Ok(decode_text(&parts).trim().to_string());
                }
                Item::Eof => return Err(self.truncated(elem)),
            }
        }
    }

    /// A number; empty content counts as 0, as in BOINC's own parser.
    fn number<T: Number + Default>(&mut self, elem: &Elem) -> Result<T> {
        let text = self.string(elem)?;
        if text.is_empty() {
            return Ok(T::default());
        }
        match text.parse::<T>() {
            Ok(v) if v.acceptable() => Ok(v),
            _ => Err(bad_value(elem, &text, T::EXPECTED)),
        }
    }

    /// BOINC booleans: `<tag/>` (or empty content) is true, otherwise an
    /// integer where non-zero is true.
    fn boolean(&mut self, elem: &Elem) -> Result<bool> {
        let text = self.string(elem)?;
        if text.is_empty() {
            return Ok(true);
        }
        match text.parse::<i64>() {
            Ok(v) => Ok(v != 0),
            Err(_) => Err(bad_value(elem, &text, "0, 1 or an empty element")),
        }
    }

    fn docker_type(&mut self, elem: &Elem) -> Result<DockerType> {
        let text = self.string(elem)?;
        if text.is_empty() {
            return Ok(DockerType::None);
        }
        match text.parse::<i32>() {
            Ok(code) => Ok(DockerType::from_code(code, &elem.path)),
            Err(_) => Err(bad_value(elem, &text, "0 (none), 1 (Docker) or 2 (Podman)")),
        }
    }

    fn expect_close(&self, open: &Elem, close: &str) -> Result<()> {
        if close == open.name {
            Ok(())
        } else {
            let what = format!(
                "found </{}> where </{}> was expected",
                echo(close, MAX_ECHOED_CHARS),
                echo(&open.name, MAX_ECHOED_CHARS)
            );
            Err(self.malformed_at(self.item_start, &what))
        }
    }

    fn truncated(&self, open: &Elem) -> InitDataError {
        let what = format!(
            "the file ends before </{}> (is it truncated?)",
            echo(&open.name, MAX_ECHOED_CHARS)
        );
        self.malformed_at(self.src.len() as u64, &what)
    }

    fn malformed_at(&self, offset: u64, what: &str) -> InitDataError {
        let (line, column) = line_column(self.src, offset);
        InitDataError::Xml(format!("at line {line}, column {column}: {what}"))
    }
}

fn bad_value(elem: &Elem, text: &str, expected: &'static str) -> InitDataError {
    let mut value: String = text.chars().take(MAX_ECHOED_CHARS).collect();
    if value.len() < text.len() {
        value.push('…');
    }
    InitDataError::BadValue {
        tag: elem.path.clone(),
        value,
        expected,
    }
}

/// Input text as an error message shows it: at most `max` characters, control
/// characters escaped, so that no input makes a long or multi-line message.
fn echo(text: &str, max: usize) -> String {
    let mut shown = String::new();
    for c in text.chars().take(max) {
        if c.is_control() {
            shown.extend(c.escape_debug());
        } else {
            shown.push(c);
        }
    }
    if text.chars().nth(max).is_some() {
        shown.push('…');
    }
    shown
}

fn lossy(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// 1-based line and column (in bytes) of a byte offset.
fn line_column(src: &str, offset: u64) -> (usize, usize) {
    let offset = usize::try_from(offset).unwrap_or(usize::MAX).min(src.len());
    let before = &src.as_bytes()[..offset];
    let line = before.iter().filter(|&&b| b == b'\n').count() + 1;
    let line_start = before
        .iter()
        .rposition(|&b| b == b'\n')
        .map_or(0, |p| p + 1);
    (line, offset - line_start + 1)
}

// ---------------------------------------------------------------------------
// Character references.

/// Raw element content: ordinary text still holds references, CDATA does not.
enum Piece<'a> {
    Escaped(Cow<'a, [u8]>),
    Verbatim(Cow<'a, [u8]>),
}

/// Joins text pieces into a string.
///
/// BOINC's `xml_escape` writes every byte above 127 as its own reference, so
/// UTF-8 "é" arrives as "&#195;&#169;": references below 256 are first taken
/// as raw bytes. If that does not give valid UTF-8 the text came from a
/// writer following the XML rule (references are code points), so it is
/// decoded again that way.
fn decode_text(parts: &[Piece<'_>]) -> String {
    let decode = |refs_are_bytes| {
        let mut out = Vec::new();
        for part in parts {
            match part {
                Piece::Escaped(raw) => unescape_into(raw, refs_are_bytes, &mut out),
                Piece::Verbatim(raw) => out.extend_from_slice(raw),
            }
        }
        out
    };
    match String::from_utf8(decode(true)) {
        Ok(s) => s,
        Err(_) => String::from_utf8_lossy(&decode(false)).into_owned(),
    }
}

/// Appends `raw` with entity and character references replaced. Anything
/// that is not a well-formed reference is kept literally, as BOINC does.
fn unescape_into(raw: &[u8], refs_are_bytes: bool, out: &mut Vec<u8>) {
    let mut i = 0;
    while i < raw.len() {
        if raw[i] == b'&' {
            if let Some(consumed) = parse_reference(&raw[i..], refs_are_bytes, out) {
                i += consumed;
                continue;
            }
        }
        out.push(raw[i]);
        i += 1;
    }
}

/// Decodes the reference at the start of `s` (which begins with '&'),
/// appending it to `out`. Returns the number of bytes consumed, or `None`
/// (appending nothing) when `s` does not start with a valid reference.
fn parse_reference(s: &[u8], refs_are_bytes: bool, out: &mut Vec<u8>) -> Option<usize> {
    // The longest valid reference is "&#x10FFFF;" or "&#1114111;".
    let semi = s.iter().take(12).position(|&b| b == b';')?;
    let body = std::str::from_utf8(&s[1..semi]).ok()?;
    let named = match body {
        "lt" => Some(b'<'),
        "gt" => Some(b'>'),
        "amp" => Some(b'&'),
        "quot" => Some(b'"'),
        "apos" => Some(b'\''),
        _ => None,
    };
    if let Some(b) = named {
        out.push(b);
        return Some(semi + 1);
    }
    let number = body.strip_prefix('#')?;
    let code = match number.strip_prefix(['x', 'X']) {
        Some(hex) if !hex.is_empty() && hex.bytes().all(|b| b.is_ascii_hexdigit()) => {
            u32::from_str_radix(hex, 16).ok()?
        }
        Some(_) => return None,
        None if !number.is_empty() && number.bytes().all(|b| b.is_ascii_digit()) => {
            number.parse::<u32>().ok()?
        }
        None => return None,
    };
    if refs_are_bytes && code < 256 {
        out.push(code as u8);
        return Some(semi + 1);
    }
    let c = char::from_u32(code)?;
    out.extend_from_slice(c.encode_utf8(&mut [0u8; 4]).as_bytes());
    Some(semi + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What a Debian 12 boinc-client 7.20.5 writes on Linux: no plan class,
    /// no Docker fields, an always-present (empty) proxy block, nested
    /// preferences and coprocessors.
    pub(super) const SAMPLE_7_20_LINUX: &str = r#"<app_init_data>
<major_version>7</major_version>
<minor_version>20</minor_version>
<release>5</release>
<app_version>105</app_version>
<userid>41</userid>
<teamid>0</teamid>
<hostid>1017</hostid>
<app_name>docker_test</app_name>
<project_preferences>
<color_scheme>Tahiti Sunset</color_scheme>
<max_frames_sec>100</max_frames_sec>
<nested><deeper a="1">x &amp; y</deeper></nested>
</project_preferences>
<user_name>Jos&#195;&#169; &lt;QA&gt; &amp; Co</user_name>
<project_dir>/var/lib/boinc-client/projects/boinc.berkeley.edu_central</project_dir>
<boinc_dir>/var/lib/boinc-client</boinc_dir>
<authenticator>0123456789abcdef0123456789abcdef</authenticator>
<wu_name>docker_test_wu_1700000000_0</wu_name>
<result_name>docker_test_wu_1700000000_0_r123456789_0</result_name>
<shm_key>-1</shm_key>
<gpu_device_num>3</gpu_device_num>
<client_pid>1234</client_pid>
<wu_cpu_time>12.500000</wu_cpu_time>
<starting_elapsed_time>30.250000</starting_elapsed_time>
<using_sandbox>0</using_sandbox>
<vm_extensions_disabled>0</vm_extensions_disabled>
<user_total_credit>1234.567890</user_total_credit>
<user_expavg_credit>12.345678</user_expavg_credit>
<host_total_credit>234.500000</host_total_credit>
<host_expavg_credit>3.100000</host_expavg_credit>
<resource_share_fraction>1.000000</resource_share_fraction>
<checkpoint_period>60.000000</checkpoint_period>
<fraction_done_start>0.000000</fraction_done_start>
<fraction_done_end>1.000000</fraction_done_end>
<gpu_type></gpu_type>
<gpu_device_num>-1</gpu_device_num>
<gpu_opencl_dev_index>-1</gpu_opencl_dev_index>
<gpu_usage>0.000000</gpu_usage>
<ncpus>1.000000</ncpus>
<rsc_fpops_est>1000000000000.000000</rsc_fpops_est>
<rsc_fpops_bound>10000000000000.000000</rsc_fpops_bound>
<rsc_memory_bound>536870912.000000</rsc_memory_bound>
<rsc_disk_bound>1073741824.000000</rsc_disk_bound>
<computation_deadline>1700604800.000000</computation_deadline>
<vbox_window>0</vbox_window>
<no_priority_change>0</no_priority_change>
<process_priority>-1</process_priority>
<process_priority_special>-1</process_priority_special>
<host_info>
    <timezone>3600</timezone>
    <domain_name>debian12</domain_name>
    <ip_addr>192.168.1.20</ip_addr>
    <host_cpid>0123456789abcdef0123456789abcdef</host_cpid>
    <p_ncpus>8</p_ncpus>
    <p_vendor>GenuineIntel</p_vendor>
    <p_model>Intel(R) Core(TM) i7-8550U CPU @ 1.80GHz [Family 6 Model 142 Stepping 10]</p_model>
    <p_features>fpu vme de pse tsc msr pae mce cx8 apic sep mtrr pge mca cmov</p_features>
    <p_fpops>4302571838.412400</p_fpops>
    <p_iops>17238124921.552200</p_iops>
    <p_membw>1000000000.000000</p_membw>
    <p_calculated>1700000000.000000</p_calculated>
    <p_vm_extensions_disabled>0</p_vm_extensions_disabled>
    <m_nbytes>16624427008.000000</m_nbytes>
    <m_cache>8388608.000000</m_cache>
    <m_swap>1023406080.000000</m_swap>
    <d_total>250375106560.000000</d_total>
    <d_free>101236555776.000000</d_free>
    <os_name>Linux Debian</os_name>
    <os_version>Debian GNU/Linux 12 (bookworm) [6.1.0-13-amd64|libc 2.36]</os_version>
    <n_usable_coprocs>1</n_usable_coprocs>
    <wsl_available>0</wsl_available>
    <coprocs>
<coproc_cuda>
   <count>1</count>
   <name>NVIDIA GeForce GTX 1050</name>
   <available_ram>2095185920.000000</available_ram>
   <maxThreadsDim>1024 1024 64</maxThreadsDim>
<coproc_opencl>
   <name>NVIDIA GeForce GTX 1050</name>
   <opencl_device_version_int>300</opencl_device_version_int>
</coproc_opencl>
</coproc_cuda>
    </coprocs>
</host_info>
<proxy_info>
    <socks_server_name></socks_server_name>
    <socks_server_port>80</socks_server_port>
    <http_server_name></http_server_name>
    <http_server_port>80</http_server_port>
    <socks5_user_name></socks5_user_name>
    <socks5_user_passwd></socks5_user_passwd>
    <socks5_remote_dns>0</socks5_remote_dns>
    <http_user_name></http_user_name>
    <http_user_passwd></http_user_passwd>
    <no_proxy></no_proxy>
    <no_autodetect>0</no_autodetect>
</proxy_info>
<global_preferences>
   <source_project>https://boinc.berkeley.edu/central/</source_project>
   <mod_time>1699999999.000000</mod_time>
   <run_on_batteries>0</run_on_batteries>
   <start_hour>0.000000</start_hour>
   <end_hour>0.000000</end_hour>
   <max_ncpus_pct>100.000000</max_ncpus_pct>
   <ram_max_used_busy_pct>50.000000</ram_max_used_busy_pct>
   <day_prefs>
      <day_of_week>1</day_of_week>
      <start_hour>8.00</start_hour>
      <end_hour>18.00</end_hour>
   </day_prefs>
</global_preferences>
<app_file>docker_wrapper_1.05_x86_64-pc-linux-gnu</app_file>
<app_file>Dockerfile_1.05</app_file>
<app_file>job_1.05.toml</app_file>
</app_init_data>
"#;

    /// An 8.x Linux client with Podman: Docker fields inside <host_info>,
    /// proxy block absent (no proxy configured).
    pub(super) const SAMPLE_8_LINUX: &str = r#"<app_init_data>
<major_version>8</major_version>
<minor_version>2</minor_version>
<release>4</release>
<app_version>100</app_version>
<userid>7</userid>
<teamid>3</teamid>
<hostid>99</hostid>
<app_name>worker</app_name>
<plan_class>docker_gpu</plan_class>
<project_dir>/var/lib/boinc/projects/example.org_proj</project_dir>
<boinc_dir>/var/lib/boinc</boinc_dir>
<authenticator>secret</authenticator>
<wu_name>worker_wu_7</wu_name>
<result_name>worker_wu_7_0</result_name>
<shm_key>1627389952</shm_key>
<gpu_device_num>0</gpu_device_num>
<client_pid>4321</client_pid>
<wu_cpu_time>0.000000</wu_cpu_time>
<starting_elapsed_time>0.000000</starting_elapsed_time>
<checkpoint_period>300.000000</checkpoint_period>
<gpu_type>NVIDIA</gpu_type>
<gpu_device_num>1</gpu_device_num>
<gpu_opencl_dev_index>1</gpu_opencl_dev_index>
<gpu_usage>0.500000</gpu_usage>
<ncpus>4.000000</ncpus>
<rsc_memory_bound>2147483648.000000</rsc_memory_bound>
<rsc_disk_bound>10737418240.000000</rsc_disk_bound>
<host_info>
    <timezone>0</timezone>
    <p_ncpus>16</p_ncpus>
    <m_nbytes>33554432000.000000</m_nbytes>
    <os_name>Linux Ubuntu</os_name>
    <os_version>Ubuntu 24.04.1 LTS [6.8.0-45-generic|libc 2.39]</os_version>
    <n_usable_coprocs>1</n_usable_coprocs>
    <docker_version>4.3.1</docker_version>
    <docker_type>2</docker_type>
    <docker_compose_version>1.0.6</docker_compose_version>
    <docker_compose_type>2</docker_compose_type>
    <coprocs>
    </coprocs>
</host_info>
<global_preferences>
   <source_project>https://example.org/proj/</source_project>
</global_preferences>
<app_file>docker_wrapper_2</app_file>
</app_init_data>
"#;

    /// An 8.x Windows client: <comm_obj_name> instead of <shm_key>, a <wsl>
    /// list, and an HTTP proxy with authentication.
    pub(super) const SAMPLE_8_WINDOWS: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<!-- written by hand after write_init_data_file -->
<app_init_data>
<major_version>8</major_version>
<minor_version>2</minor_version>
<release>4</release>
<app_name>worker</app_name>
<project_dir>C:\ProgramData\BOINC\projects\example.org_proj</project_dir>
<boinc_dir>C:\ProgramData\BOINC</boinc_dir>
<wu_name>worker_wu_8</wu_name>
<result_name>worker_wu_8_1</result_name>
<comm_obj_name>boinc_2</comm_obj_name>
<gpu_device_num>2</gpu_device_num>
<client_pid>9000</client_pid>
<ncpus>2.000000</ncpus>
<rsc_memory_bound>1000000000.000000</rsc_memory_bound>
<host_info>
    <timezone>-18000</timezone>
    <p_ncpus>12</p_ncpus>
    <m_nbytes>17179869184.000000</m_nbytes>
    <os_name>Microsoft Windows 11</os_name>
    <os_version>Professional x64 Edition, (10.00.22631.00)</os_version>
    <n_usable_coprocs>0</n_usable_coprocs>
    <wsl>
        <distro>
            <distro_name>boinc-buda-runner</distro_name>
            <os_name>Fedora Linux</os_name>
            <os_version>40 (Container Image)</os_version>
            <wsl_version>2</wsl_version>
            <distro_version>3</distro_version>
            <libc_version>2.39</libc_version>
            <docker_version>5.2.2</docker_version>
            <docker_type>2</docker_type>
            <wsl_gpu>
                <name>NVIDIA GeForce RTX 3060</name>
                <has_cuda/>
            </wsl_gpu>
        </distro>
        <distro>
            <distro_name>Ubuntu</distro_name>
            <os_name>Ubuntu</os_name>
            <os_version>22.04.4 LTS</os_version>
            <wsl_version>2</wsl_version>
            <is_default/>
            <docker_version>27.2.0</docker_version>
            <docker_type>1</docker_type>
            <docker_compose_version>2.29.2</docker_compose_version>
            <docker_compose_type>1</docker_compose_type>
        </distro>
    </wsl>
</host_info>
<proxy_info>
    <use_http_proxy/>
    <use_http_auth/>
    <socks_server_name></socks_server_name>
    <socks_server_port>0</socks_server_port>
    <http_server_name>proxy.corp.example</http_server_name>
    <http_server_port>3128</http_server_port>
    <socks5_user_name></socks5_user_name>
    <socks5_user_passwd></socks5_user_passwd>
    <socks5_remote_dns>0</socks5_remote_dns>
    <http_user_name>alice</http_user_name>
    <http_user_passwd>p@ss:w&amp;rd</http_user_passwd>
    <no_proxy>localhost,127.0.0.1,.corp.example</no_proxy>
    <no_autodetect>0</no_autodetect>
</proxy_info>
<global_preferences>
</global_preferences>
</app_init_data>
"#;

    pub(super) fn wrap(body: &str) -> String {
        format!("<app_init_data>\n{body}\n</app_init_data>\n")
    }

    fn parse_err(xml: &str) -> InitDataError {
        match InitData::parse(xml) {
            Ok(d) => panic!("expected an error, parsed {d:?}"),
            Err(e) => e,
        }
    }

    #[test]
    fn parses_7_20_linux_sample() {
        let d = InitData::parse(SAMPLE_7_20_LINUX).unwrap();
        assert_eq!(
            d.project_dir,
            "/var/lib/boinc-client/projects/boinc.berkeley.edu_central"
        );
        assert_eq!(d.project_dir_name(), "boinc.berkeley.edu_central");
        assert_eq!(d.boinc_dir, "/var/lib/boinc-client");
        assert_eq!(d.wu_name, "docker_test_wu_1700000000_0");
        assert_eq!(d.result_name, "docker_test_wu_1700000000_0_r123456789_0");
        assert_eq!(d.wu_cpu_time, 12.5);
        assert_eq!(d.starting_elapsed_time, 30.25);
        assert_eq!(d.ncpus, 1.0);
        assert_eq!(d.rsc_memory_bound, 536870912.0);
        assert_eq!(d.rsc_disk_bound, 1073741824.0);
        assert_eq!(d.gpu_type, "");
        assert_eq!(d.gpu_device_num, -1);

        let h = &d.host_info;
        assert_eq!(h.docker_type, DockerType::None);
        assert!(h.wsl_distros.is_empty());

        let p = d
            .proxy_info
            .as_ref()
            .expect("7.20 always writes <proxy_info>");
        assert_eq!(
            p,
            &ProxyInfo {
                socks_server_port: 80,
                http_server_port: 80,
                ..ProxyInfo::default()
            }
        );
        assert!(d.proxy_env().is_empty());
    }

    #[test]
    fn parses_8_linux_sample_with_podman() {
        let d = InitData::parse(SAMPLE_8_LINUX).unwrap();
        assert_eq!(d.project_dir_name(), "example.org_proj");
        assert_eq!(d.ncpus, 4.0);
        assert_eq!(d.gpu_type, "NVIDIA");
        assert_eq!(d.gpu_device_num, 1);
        let h = &d.host_info;
        assert_eq!(h.docker_type, DockerType::Podman);
        assert_eq!(d.proxy_info, None);
        assert!(d.proxy_env().is_empty());
    }

    #[test]
    fn parses_8_windows_sample_with_wsl_and_http_proxy() {
        let d = InitData::parse(SAMPLE_8_WINDOWS).unwrap();
        assert_eq!(d.project_dir_name(), "example.org_proj");
        let h = &d.host_info;
        assert_eq!(h.docker_type, DockerType::None);
        assert_eq!(
            h.wsl_distros,
            vec![
                WslDistro {
                    distro_name: "boinc-buda-runner".into(),
                    boinc_buda_runner_version: 3,
                    disallowed: false,
                    docker_version: "5.2.2".into(),
                    docker_type: DockerType::Podman,
                },
                WslDistro {
                    distro_name: "Ubuntu".into(),
                    boinc_buda_runner_version: 0,
                    disallowed: false,
                    docker_version: "27.2.0".into(),
                    docker_type: DockerType::Docker,
                },
            ]
        );
        // The engine's choice of a distro sees the same, in its own terms.
        assert_eq!(
            h.engine_distros()[0],
            engine::WslDistro {
                name: "boinc-buda-runner".into(),
                engine: Some(EngineKind::Podman),
                engine_version: "5.2.2".into(),
                disallowed: false,
                boinc_runner_version: 3,
            }
        );
        assert_eq!(h.engine_distros()[1].engine, Some(EngineKind::Docker));
        assert_eq!(DockerType::None.engine_kind(), None);

        let p = d.proxy_info.as_ref().unwrap();
        assert!(p.use_http_proxy && !p.use_socks_proxy);
        assert_eq!(p.http_user_passwd, "p@ss:w&rd");
        let url = "http://alice:p%40ss%3Aw%26rd@proxy.corp.example:3128";
        let no_proxy = "localhost,127.0.0.1,.corp.example";
        assert_eq!(
            d.proxy_env(),
            [
                ("http_proxy", url),
                ("https_proxy", url),
                ("HTTPS_PROXY", url),
                ("no_proxy", no_proxy),
                ("NO_PROXY", no_proxy),
            ]
            .map(|(k, v)| (k.to_string(), v.to_string()))
        );
    }

    #[test]
    fn socks_proxy_with_remote_dns() {
        let xml = wrap(
            "<proxy_info>
                <use_socks_proxy/>
                <socks_server_name>127.0.0.1</socks_server_name>
                <socks_server_port>1080</socks_server_port>
                <http_server_name></http_server_name>
                <http_server_port>80</http_server_port>
                <socks5_user_name></socks5_user_name>
                <socks5_remote_dns>1</socks5_remote_dns>
                <no_proxy></no_proxy>
            </proxy_info>",
        );
        let d = InitData::parse(&xml).unwrap();
        let url = "socks5h://127.0.0.1:1080";
        assert_eq!(
            d.proxy_env(),
            [
                ("http_proxy", url),
                ("https_proxy", url),
                ("HTTPS_PROXY", url)
            ]
            .map(|(k, v)| (k.to_string(), v.to_string()))
        );
    }

    #[test]
    fn proxy_env_variants() {
        let with = |pi: ProxyInfo| InitData {
            proxy_info: Some(pi),
            ..InitData::default()
        };
        let first = |d: InitData| d.proxy_env().first().map(|(_, v)| v.clone());

        // SOCKS without remote DNS, with credentials.
        let socks = ProxyInfo {
            use_socks_proxy: true,
            socks_server_name: "socks.example".into(),
            socks_server_port: 1080,
            socks5_user_name: "bob".into(),
            socks5_user_passwd: "pw".into(),
            ..ProxyInfo::default()
        };
        assert_eq!(
            first(with(socks.clone())).as_deref(),
            Some("socks5://bob:pw@socks.example:1080")
        );

        // HTTP wins over SOCKS; no credentials without a user name; IPv6
        // hosts are bracketed.
        let both = ProxyInfo {
            use_http_proxy: true,
            http_server_name: "::1".into(),
            http_server_port: 8080,
            ..socks.clone()
        };
        assert_eq!(first(with(both)).as_deref(), Some("http://[::1]:8080"));

        // A server name without its use_ flag is not a proxy to use, but the
        // no-proxy list is still exported.
        let unused = ProxyInfo {
            http_server_name: "proxy".into(),
            no_proxy: "localhost".into(),
            ..ProxyInfo::default()
        };
        assert_eq!(
            with(unused).proxy_env(),
            [("no_proxy", "localhost"), ("NO_PROXY", "localhost")]
                .map(|(k, v)| (k.to_string(), v.to_string()))
        );

        // The flag without a server name is not a proxy either.
        let nameless = ProxyInfo {
            use_http_proxy: true,
            ..ProxyInfo::default()
        };
        assert!(with(nameless).proxy_env().is_empty());

        // Port 0 means "default port".
        let portless = ProxyInfo {
            use_http_proxy: true,
            http_server_name: "proxy".into(),
            ..ProxyInfo::default()
        };
        assert_eq!(first(with(portless)).as_deref(), Some("http://proxy"));
    }

    #[test]
    fn project_dir_name_variants() {
        let name = |dir: &str| {
            let d = InitData {
                project_dir: dir.into(),
                ..InitData::default()
            };
            d.project_dir_name().to_string()
        };
        assert_eq!(
            name("/var/lib/boinc-client/projects/boinc.berkeley.edu_central"),
            "boinc.berkeley.edu_central"
        );
        assert_eq!(
            name(r"C:\ProgramData\BOINC\projects\boinc.berkeley.edu_central"),
            "boinc.berkeley.edu_central"
        );
        assert_eq!(
            name("/var/lib/boinc/projects/example.org_proj/"),
            "example.org_proj"
        );
        assert_eq!(name("example.org_proj"), "example.org_proj");
        assert_eq!(name(""), "");
    }

    #[test]
    fn booleans_in_all_forms() {
        let xml = wrap(
            "<host_info><wsl>
                <distro><distro_name>a</distro_name><disallowed/></distro>
                <distro><distro_name>b</distro_name><disallowed>1</disallowed></distro>
                <distro><distro_name>c</distro_name><disallowed></disallowed></distro>
                <distro><distro_name>d</distro_name><disallowed>0</disallowed></distro>
                <distro><distro_name>e</distro_name></distro>
            </wsl></host_info>",
        );
        let d = InitData::parse(&xml).unwrap();
        let flags: Vec<_> = d
            .host_info
            .wsl_distros
            .iter()
            .map(|w| w.disallowed)
            .collect();
        assert_eq!(flags, [true, true, true, false, false]);

        let err = parse_err(&wrap(
            "<proxy_info><use_http_proxy>yes</use_http_proxy></proxy_info>",
        ));
        assert!(
            matches!(&err, InitDataError::BadValue { tag, .. } if tag == "proxy_info/use_http_proxy")
        );
    }

    #[test]
    fn old_7_x_wsl_format_is_understood() {
        let xml = wrap(
            "<host_info><wsl_available>1</wsl_available><wsl><distro>
                <distro_name>Ubuntu-20.04</distro_name>
                <name>Ubuntu</name>
                <version>20.04</version>
                <is_default>1</is_default>
            </distro></wsl></host_info>",
        );
        let d = InitData::parse(&xml).unwrap();
        let w = &d.host_info.wsl_distros[0];
        assert_eq!(w.distro_name, "Ubuntu-20.04");
        assert_eq!(w.docker_type, DockerType::None);
    }

    #[test]
    fn unknown_docker_type_code_is_none() {
        let d =
            InitData::parse(&wrap("<host_info><docker_type>7</docker_type></host_info>")).unwrap();
        assert_eq!(d.host_info.docker_type, DockerType::None);
        let d =
            InitData::parse(&wrap("<host_info><docker_type>1</docker_type></host_info>")).unwrap();
        assert_eq!(d.host_info.docker_type, DockerType::Docker);
    }

    #[test]
    fn absent_fields_keep_defaults() {
        let d = InitData::parse("<app_init_data></app_init_data>").unwrap();
        assert_eq!(d, InitData::default());
        let d = InitData::parse("<app_init_data/>").unwrap();
        assert_eq!(d, InitData::default());
        assert_eq!(d.ncpus, 0.0);
    }

    #[test]
    fn empty_numbers_are_zero_and_whitespace_is_trimmed() {
        let d = InitData::parse(&wrap(
            "<gpu_device_num></gpu_device_num><ncpus>\n  2.5 \n</ncpus><wu_name>\n  wu_1\n</wu_name>",
        ))
        .unwrap();
        assert_eq!(d.gpu_device_num, 0);
        assert_eq!(d.ncpus, 2.5);
        assert_eq!(d.wu_name, "wu_1");
    }

    #[test]
    fn text_is_unescaped() {
        // BOINC's xml_escape writes each UTF-8 byte as its own reference.
        let d = InitData::parse(&wrap("<host_info><wsl><distro><distro_name>Fran&#195;&#167;ais &lt;&amp;&gt; &quot;x&apos;</distro_name></distro></wsl></host_info>")).unwrap();
        assert_eq!(d.host_info.wsl_distros[0].distro_name, "Français <&> \"x'");
        // Standard XML code points still work when they are not UTF-8 bytes.
        let d = InitData::parse(&wrap("<wu_name>caf&#233; &#x20AC;</wu_name>")).unwrap();
        assert_eq!(d.wu_name, "café €");
        // Raw UTF-8, CDATA, and malformed references kept as written.
        let d = InitData::parse(&wrap(
            "<wu_name>ünï <![CDATA[a&amp;<b>]]> & &bogus; &#; &#xZZ;</wu_name>",
        ))
        .unwrap();
        assert_eq!(d.wu_name, "ünï a&amp;<b> & &bogus; &#; &#xZZ;");
    }

    #[test]
    fn unknown_content_is_skipped() {
        let xml = wrap(
            "<future_thing attr=\"1\"><gpu_device_num>99</gpu_device_num><deeper><ncpus>abc</ncpus></deeper></future_thing>
             <project_preferences><a><b></a></b><c/></project_preferences>
             <gpu_device_num>4</gpu_device_num>",
        );
        let d = InitData::parse(&xml).unwrap();
        assert_eq!(d.gpu_device_num, 4);
        assert_eq!(d.ncpus, 0.0);
    }

    #[test]
    fn trailing_content_after_root_is_ignored() {
        let d = InitData::parse(
            "<app_init_data><gpu_device_num>1</gpu_device_num></app_init_data>\n<junk>\0\u{1}",
        )
        .unwrap();
        assert_eq!(d.gpu_device_num, 1);
    }

    #[test]
    fn deep_nesting_does_not_overflow_the_stack() {
        let depth = 10_000;
        let body = format!(
            "{}{}<gpu_device_num>5</gpu_device_num>",
            "<x>".repeat(depth),
            "</x>".repeat(depth)
        );
        let d = InitData::parse(&wrap(&body)).unwrap();
        assert_eq!(d.gpu_device_num, 5);

        // Nesting inside a field we read, and nesting that never closes.
        let inside = format!(
            "<gpu_device_num>{}{}7</gpu_device_num>",
            "<x>".repeat(depth),
            "</x>".repeat(depth)
        );
        assert_eq!(InitData::parse(&wrap(&inside)).unwrap().gpu_device_num, 7);
        let unclosed = format!("<app_init_data>{}", "<x>".repeat(depth));
        assert!(matches!(parse_err(&unclosed), InitDataError::Xml(_)));
    }

    #[test]
    fn malformed_inputs_are_errors() {
        assert!(matches!(parse_err(""), InitDataError::MissingRoot));
        assert!(matches!(parse_err("   \n"), InitDataError::MissingRoot));
        assert!(matches!(
            parse_err("<host_info></host_info>"),
            InitDataError::MissingRoot
        ));
        assert!(matches!(
            parse_err("<app_init_datax></app_init_datax>"),
            InitDataError::MissingRoot
        ));

        let truncated = &SAMPLE_7_20_LINUX[..SAMPLE_7_20_LINUX.len() / 2];
        let err = parse_err(truncated);
        assert!(matches!(err, InitDataError::Xml(_)));
        assert!(err.to_string().contains("ends before"), "{err}");

        let err = parse_err(&wrap("<ncpus>abc</ncpus>"));
        match &err {
            InitDataError::BadValue { tag, value, .. } => {
                assert_eq!((tag.as_str(), value.as_str()), ("ncpus", "abc"))
            }
            other => panic!("{other:?}"),
        }
        assert!(err.to_string().contains("<ncpus>"), "{err}");

        let err = parse_err(&wrap(
            "<host_info><wsl><distro><distro_version>lots</distro_version></distro></wsl></host_info>",
        ));
        assert!(
            err.to_string()
                .contains("<distro_version> (inside host_info/wsl/distro)"),
            "{err}"
        );
        assert!(matches!(
            parse_err(&wrap("<gpu_device_num>1.5</gpu_device_num>")),
            InitDataError::BadValue { .. }
        ));
        assert!(matches!(
            parse_err(&wrap("<ncpus>nan</ncpus>")),
            InitDataError::BadValue { .. }
        ));
        assert!(matches!(
            parse_err(&wrap("<gpu_device_num>99999999999</gpu_device_num>")),
            InitDataError::BadValue { .. }
        ));

        let err = parse_err(&wrap("<gpu_device_num>1</ncpus>"));
        assert!(
            err.to_string().contains("</ncpus>") && err.to_string().contains("</gpu_device_num>"),
            "{err}"
        );
        assert!(matches!(
            parse_err("<app_init_data><host_info></app_init_data>"),
            InitDataError::Xml(_)
        ));
        assert!(matches!(
            parse_err("<app_init_data><gpu_device_num>1<!-- </gpu_device_num></app_init_data>"),
            InitDataError::Xml(_)
        ));
    }

    #[test]
    fn bad_value_echo_is_bounded() {
        let long = "9".repeat(1000) + "x";
        let err = parse_err(&wrap(&format!("<gpu_device_num>{long}</gpu_device_num>")));
        assert!(err.to_string().len() < 200, "{err}");
    }

    #[test]
    fn error_messages_say_what_is_wrong() {
        let path = PathBuf::from("/slots/3/init_data.xml");
        let errors = [
            InitDataError::Io {
                path: path.clone(),
                source: std::io::Error::from(std::io::ErrorKind::NotFound),
            },
            InitDataError::TooLarge {
                path: path.clone(),
                bytes: 5 << 20,
            },
            parse_err(&wrap("<gpu_device_num>1</ncpus>")),
            parse_err(&wrap("<ncpus>abc</ncpus>")),
            parse_err(""),
        ];
        for err in &errors {
            let text = err.to_string();
            assert!(text.contains("init_data.xml"), "{text}");
            assert!(text.split_whitespace().count() >= 5, "{text}");
        }
        assert!(errors[2].to_string().contains("line 2"), "{}", errors[2]);
        assert!(std::error::Error::source(&errors[0]).is_some());
    }

    #[test]
    fn garbage_never_panics() {
        // A small deterministic generator is enough to exercise odd bytes.
        let mut state: u32 = 0x1234_5678;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            state
        };
        for _ in 0..200 {
            let len = (next() % 400) as usize;
            let bytes: Vec<u8> = (0..len).map(|_| next() as u8).collect();
            let _ = InitData::parse(&String::from_utf8_lossy(&bytes));
            // Garbage inside a valid root too.
            let inner = String::from_utf8_lossy(&bytes).replace('\0', "<");
            let _ = InitData::parse(&wrap(&inner));
        }
        assert!(InitData::parse("\u{0}\u{1}\u{2}\u{ff}binary").is_err());
    }

    #[test]
    fn every_truncation_and_mutation_of_a_sample_is_handled() {
        let sample = SAMPLE_8_WINDOWS;
        for (i, _) in sample.char_indices() {
            let _ = InitData::parse(&sample[..i]);
            for replacement in ["<", ">", "/", "&", ""] {
                let mutated = format!("{}{}{}", &sample[..i], replacement, &sample[i + 1..]);
                let _ = InitData::parse(&mutated);
            }
        }
    }

    fn temp_path(name: &str) -> PathBuf {
        std::env::temp_dir().join(format!("init_data_test_{}_{name}", std::process::id()))
    }

    #[test]
    fn load_reads_a_file() {
        let path = temp_path("ok.xml");
        // A legacy code-page byte must not make the file unreadable.
        let mut bytes = SAMPLE_8_LINUX.as_bytes().to_vec();
        let at = SAMPLE_8_LINUX.find("worker_wu_7<").unwrap() + 6;
        bytes[at] = 0xE9;
        std::fs::write(&path, &bytes).unwrap();
        let result = InitData::load(&path);
        std::fs::remove_file(&path).unwrap();
        let d = result.unwrap();
        assert_eq!(d.wu_name, "worker\u{FFFD}wu_7");
        assert_eq!(d.host_info.docker_type, DockerType::Podman);
    }

    #[test]
    fn load_missing_file_names_the_path() {
        let path = temp_path("does_not_exist.xml");
        let err = InitData::load(&path).unwrap_err();
        assert!(matches!(err, InitDataError::Io { .. }));
        assert!(
            err.to_string().contains(&path.display().to_string()),
            "{err}"
        );
    }

    #[test]
    fn load_refuses_huge_files() {
        let path = temp_path("huge.xml");
        std::fs::write(&path, vec![b' '; 5 << 20]).unwrap();
        let result = InitData::load(&path);
        std::fs::remove_file(&path).unwrap();
        match result {
            Err(InitDataError::TooLarge { bytes, .. }) => assert_eq!(bytes, 5 << 20),
            other => panic!("{other:?}"),
        }
    }
}

/// Property tests: hostile or damaged input never panics and every error is a
/// short one-line message; what a client writes reads back unchanged.
#[cfg(test)]
mod props {
    use super::*;
    use crate::property_tests::{check_message, config};
    use proptest::collection::vec;
    use proptest::prelude::*;
    use proptest::sample::{select, Index};

    /// Bytes of text the parsed values hold; decoding never expands input,
    /// so this stays within the input's size.
    fn text_bytes(d: &InitData) -> usize {
        let h = &d.host_info;
        let strings = [
            &d.project_dir,
            &d.boinc_dir,
            &d.wu_name,
            &d.result_name,
            &d.gpu_type,
        ];
        let distros = h
            .wsl_distros
            .iter()
            .flat_map(|w| [&w.distro_name, &w.docker_version]);
        let proxy = d.proxy_info.iter().flat_map(|p| {
            [
                &p.socks_server_name,
                &p.http_server_name,
                &p.socks5_user_name,
                &p.socks5_user_passwd,
                &p.http_user_name,
                &p.http_user_passwd,
                &p.no_proxy,
            ]
        });
        strings
            .into_iter()
            .chain(distros)
            .chain(proxy)
            .map(String::len)
            .sum()
    }

    /// Parses `xml` and checks what any input must give: a value no larger
    /// than the input, or a readable error.
    fn check_parse(xml: &str) -> std::result::Result<(), TestCaseError> {
        match InitData::parse(xml) {
            Ok(d) => prop_assert!(text_bytes(&d) <= xml.len()),
            Err(e) => check_message(&e.to_string())?,
        }
        Ok(())
    }

    // ---- damaged input ----------------------------------------------------

    /// Pieces of XML syntax, so that random input gets past the first '<'.
    const TOKENS: &[&str] = &[
        "<",
        ">",
        "</",
        "/>",
        "&",
        ";",
        "&#",
        "&#x",
        "&amp;",
        "&#195;",
        "&#xFFFFFFFF;",
        "=\"",
        "\"",
        "'",
        "<![CDATA[",
        "]]>",
        "<!--",
        "-->",
        "<?",
        "?>",
        "<!DOCTYPE x>",
        "<app_init_data>",
        "</app_init_data>",
        "<gpu_device_num>",
        "</gpu_device_num>",
        "<ncpus>",
        "<host_info>",
        "</host_info>",
        "<wsl>",
        "<distro>",
        "</distro>",
        "<proxy_info>",
        "<use_http_proxy/>",
        "<x a='1'>",
        "</x>",
        "1",
        "-2.5e3",
        "nan",
        " ",
        "\n",
        "\r\n",
        "\t",
        "\0",
        "\u{feff}",
        "é",
        "\u{10FFFF}",
    ];

    fn token_soup() -> impl Strategy<Value = String> {
        vec(select(TOKENS), 0..120).prop_map(|t| t.concat())
    }

    /// Bytes to insert: raw bytes, or a few syntax tokens.
    fn insertion() -> impl Strategy<Value = Vec<u8>> {
        prop_oneof![
            vec(any::<u8>(), 1..8),
            vec(select(TOKENS), 1..4).prop_map(|t| t.concat().into_bytes()),
        ]
    }

    /// Large constructs a parser might choke on.
    #[derive(Debug, Clone, Copy)]
    enum Huge {
        Text,
        Attribute,
        TagName,
        EndTagName,
        References,
        UnclosedComment,
        UnclosedCData,
    }

    fn huge(kind: Huge, n: usize) -> String {
        match kind {
            Huge::Text => "a &amp; é ".repeat(n / 10),
            Huge::Attribute => format!("<big attr=\"{}\">x</big>", "v".repeat(n)),
            Huge::TagName => format!("<{}>", "t".repeat(n)),
            Huge::EndTagName => format!("</{}\n>", "t".repeat(n)),
            Huge::References => "&#128512;&#xE9;".repeat(n / 15),
            Huge::UnclosedComment => format!("<!--{}", "-".repeat(n)),
            Huge::UnclosedCData => format!("<![CDATA[{}", "]".repeat(n)),
        }
    }

    #[derive(Debug, Clone)]
    enum Mutation {
        Insert(Index, Vec<u8>),
        Delete(Index, usize),
        Replace(Index, u8),
        Truncate(Index),
        /// Repeats `count` lines from a line onwards (duplicated tags,
        /// possibly unbalanced).
        DuplicateLines(Index, usize, usize),
        /// `depth` nested elements, closed or not.
        Nest(Index, usize, bool),
        Huge(Index, Huge, usize),
    }

    fn mutation() -> impl Strategy<Value = Mutation> {
        let huge_kind = select(vec![
            Huge::Text,
            Huge::Attribute,
            Huge::TagName,
            Huge::EndTagName,
            Huge::References,
            Huge::UnclosedComment,
            Huge::UnclosedCData,
        ]);
        prop_oneof![
            4 => (any::<Index>(), insertion()).prop_map(|(i, b)| Mutation::Insert(i, b)),
            3 => (any::<Index>(), 1..20usize).prop_map(|(i, n)| Mutation::Delete(i, n)),
            3 => (any::<Index>(), any::<u8>()).prop_map(|(i, b)| Mutation::Replace(i, b)),
            1 => any::<Index>().prop_map(Mutation::Truncate),
            2 => (any::<Index>(), 1..6usize, 1..4usize)
                .prop_map(|(i, n, times)| Mutation::DuplicateLines(i, n, times)),
            1 => (any::<Index>(), 1..20_000usize, any::<bool>())
                .prop_map(|(i, d, closed)| Mutation::Nest(i, d, closed)),
            1 => (any::<Index>(), huge_kind, 1_000..100_000usize)
                .prop_map(|(i, k, n)| Mutation::Huge(i, k, n)),
        ]
    }

    fn apply(bytes: &mut Vec<u8>, m: &Mutation) {
        let at = |i: &Index, len: usize| i.index(len + 1);
        match m {
            Mutation::Insert(i, b) => {
                let p = at(i, bytes.len());
                bytes.splice(p..p, b.iter().copied());
            }
            Mutation::Delete(i, n) => {
                let p = at(i, bytes.len());
                bytes.drain(p..(p + n).min(bytes.len()));
            }
            Mutation::Replace(i, b) => {
                if !bytes.is_empty() {
                    let p = i.index(bytes.len());
                    bytes[p] = *b;
                }
            }
            Mutation::Truncate(i) => bytes.truncate(at(i, bytes.len())),
            Mutation::DuplicateLines(i, n, times) => {
                let starts: Vec<usize> = std::iter::once(0)
                    .chain(
                        bytes
                            .iter()
                            .enumerate()
                            .filter(|(_, &b)| b == b'\n')
                            .map(|(p, _)| p + 1),
                    )
                    .collect();
                let first = i.index(starts.len());
                let start = starts[first];
                let end = starts.get(first + n).copied().unwrap_or(bytes.len());
                let lines = bytes[start..end].repeat(*times);
                bytes.splice(end..end, lines);
            }
            Mutation::Nest(i, depth, closed) => {
                let mut s = "<x>".repeat(*depth);
                if *closed {
                    s.push_str(&"</x>".repeat(*depth));
                }
                let p = at(i, bytes.len());
                bytes.splice(p..p, s.into_bytes());
            }
            Mutation::Huge(i, kind, n) => {
                let p = at(i, bytes.len());
                bytes.splice(p..p, huge(*kind, *n).into_bytes());
            }
        }
    }

    fn sample() -> impl Strategy<Value = &'static str> {
        select(vec![
            tests::SAMPLE_7_20_LINUX,
            tests::SAMPLE_8_LINUX,
            tests::SAMPLE_8_WINDOWS,
        ])
    }

    // ---- valid documents --------------------------------------------------

    fn tricky_char() -> impl Strategy<Value = char> {
        prop_oneof![
            3 => any::<char>(),
            3 => select(vec![
                '<', '>', '&', '"', '\'', ';', '#', 'x', '/', '!', '[', ']', '?', '-', '=', ' ',
                '\t', '\n', '\r', '\0', '\u{7f}', '\u{a0}', '\u{feff}', 'é', 'Ã', '©', 'ÿ', '€',
                '\u{1F600}', '\u{10FFFF}',
            ]),
            4 => prop::char::range('a', 'z'),
        ]
    }

    /// A field value as the parser returns it (trimmed): empty, short and
    /// odd, or long.
    fn text() -> impl Strategy<Value = String> {
        prop_oneof![
            8 => vec(tricky_char(), 0..30),
            1 => vec(tricky_char(), 300..3000),
        ]
        .prop_map(|chars| chars.into_iter().collect::<String>().trim().to_string())
    }

    fn number() -> impl Strategy<Value = f64> {
        prop_oneof![
            any::<f64>().prop_filter("finite", |x| x.is_finite()),
            -1e6..1e6f64,
            Just(0.0),
        ]
    }

    fn docker_type() -> impl Strategy<Value = DockerType> {
        select(vec![
            DockerType::None,
            DockerType::Docker,
            DockerType::Podman,
        ])
    }

    fn distro() -> impl Strategy<Value = WslDistro> {
        (
            (text(), text()),
            (any::<i32>(), any::<bool>()),
            docker_type(),
        )
            .prop_map(|((name, dv), (bv, dis), dt)| WslDistro {
                distro_name: name,
                boinc_buda_runner_version: bv,
                disallowed: dis,
                docker_version: dv,
                docker_type: dt,
            })
    }

    fn host_info() -> impl Strategy<Value = HostInfo> {
        (docker_type(), vec(distro(), 0..3)).prop_map(|(dt, wsl)| HostInfo {
            docker_type: dt,
            wsl_distros: wsl,
        })
    }

    fn proxy_info() -> impl Strategy<Value = ProxyInfo> {
        (
            (any::<bool>(), any::<bool>(), any::<bool>()),
            (any::<i32>(), any::<i32>()),
            (text(), text(), text(), text(), text(), text(), text()),
        )
            .prop_map(
                |((h, s, rd), (sp, hp), (sn, hn, su, spw, hu, hpw, np))| ProxyInfo {
                    use_http_proxy: h,
                    use_socks_proxy: s,
                    socks_server_name: sn,
                    socks_server_port: sp,
                    http_server_name: hn,
                    http_server_port: hp,
                    socks5_user_name: su,
                    socks5_user_passwd: spw,
                    socks5_remote_dns: rd,
                    http_user_name: hu,
                    http_user_passwd: hpw,
                    no_proxy: np,
                },
            )
    }

    fn init_data() -> impl Strategy<Value = InitData> {
        (
            (text(), text(), text(), text(), text()),
            (number(), number(), number(), number()),
            any::<i32>(),
            (host_info(), prop::option::of(proxy_info())),
        )
            .prop_map(
                |(
                    (pdir, bdir, wu, result, gpu),
                    (cpu, ncpus, mem, disk),
                    gdev,
                    (host_info, proxy_info),
                )| InitData {
                    project_dir: pdir,
                    boinc_dir: bdir,
                    wu_name: wu,
                    result_name: result,
                    wu_cpu_time: cpu,
                    starting_elapsed_time: 0.0,
                    ncpus,
                    rsc_memory_bound: mem,
                    rsc_disk_bound: disk,
                    gpu_type: gpu,
                    gpu_device_num: gdev,
                    host_info,
                    proxy_info,
                },
            )
    }

    /// Writes documents the ways clients and hand-written files do; each
    /// choice (escaping, layout, field order, how a boolean looks) comes from
    /// `choices`, so shrinking leads to the plainest document.
    struct Writer {
        choices: Vec<u8>,
        next: usize,
    }

    /// Skippable content the parser must step over at any level.
    const JUNK: &[&str] = &[
        "",
        "\n",
        "<!-- a comment with <tags> & stuff -->",
        "<future_thing a=\"1\"><gpu_device_num>99</gpu_device_num><deeper><ncpus>abc</ncpus></deeper></future_thing>",
        "<x/>",
        "<?pi x?>",
        "<project_preferences><a><b></a></b><c/></project_preferences>",
        "stray text &amp; &bogus;",
        "<![CDATA[<gpu_device_num>1</gpu_device_num>]]>",
    ];

    impl Writer {
        fn choose(&mut self, n: usize) -> usize {
            let c = self.choices[self.next % self.choices.len()];
            self.next += 1;
            usize::from(c) % n
        }

        /// Text content, escaped one of the ways a writer may.
        fn text(&mut self, s: &str) -> String {
            let escaped = match self.choose(5) {
                // Only what must be escaped.
                0 => s
                    .replace('&', "&amp;")
                    .replace('<', "&lt;")
                    .replace('>', "&gt;"),
                // BOINC's xml_escape: every byte outside printable ASCII is
                // its own reference.
                1 => s
                    .bytes()
                    .map(|b| match b {
                        b'<' => "&lt;".to_string(),
                        b'>' => "&gt;".to_string(),
                        b'&' => "&amp;".to_string(),
                        b'"' => "&quot;".to_string(),
                        b'\'' => "&apos;".to_string(),
                        b if !(32..128).contains(&b) => format!("&#{b};"),
                        b => char::from(b).to_string(),
                    })
                    .collect(),
                // XML code points, decimal or hex, for control characters
                // and everything above Latin-1 (Latin-1 references would be
                // read as UTF-8 bytes, as BOINC writes them).
                n @ (2 | 3) => s
                    .chars()
                    .map(|c| match c {
                        '<' => "&lt;".to_string(),
                        '&' => "&amp;".to_string(),
                        c if (c as u32) < 32 || (c as u32) >= 256 => {
                            if n == 2 {
                                format!("&#{};", c as u32)
                            } else {
                                format!("&#x{:X};", c as u32)
                            }
                        }
                        c => c.to_string(),
                    })
                    .collect(),
                _ => format!("<![CDATA[{}]]>", s.replace("]]>", "]]]]><![CDATA[>")),
            };
            let pad = ["", " ", "\n  ", "\t"][self.choose(4)];
            format!("{pad}{escaped}{pad}")
        }

        fn element(&self, tag: &str, content: &str) -> String {
            format!("<{tag}>{content}</{tag}>")
        }

        fn string(&mut self, tag: &str, s: &str) -> String {
            if s.is_empty() && self.choose(2) == 0 {
                return format!("<{tag}/>");
            }
            let content = self.text(s);
            self.element(tag, &content)
        }

        fn integer(&mut self, tag: &str, n: i32) -> String {
            let text = match self.choose(2) {
                0 => format!("{n}"),
                _ => format!(" {n}\n"),
            };
            self.element(tag, &text)
        }

        fn number(&mut self, tag: &str, x: f64) -> String {
            let text = match self.choose(3) {
                0 => format!("{x}"),
                1 => format!("{x:e}"),
                _ => format!(" {x}\n"),
            };
            self.element(tag, &text)
        }

        fn boolean(&mut self, tag: &str, b: bool) -> Option<String> {
            Some(match (b, self.choose(4)) {
                (false, 0 | 1) => return None,
                (false, _) => self.element(tag, "0"),
                (true, 0) => format!("<{tag}/>"),
                (true, 1) => self.element(tag, ""),
                (true, 2) => self.element(tag, "1"),
                (true, _) => self.element(tag, " -3 "),
            })
        }

        fn docker_type(&mut self, tag: &str, t: DockerType) -> Option<String> {
            let code = match t {
                DockerType::None if self.choose(2) == 0 => return None,
                DockerType::None => "0",
                DockerType::Docker => "1",
                DockerType::Podman => "2",
            };
            Some(self.element(tag, code))
        }

        /// `<tag>` with junk between its `children`, which are fields in
        /// any order unless `ordered`.
        fn block(&mut self, tag: &str, children: Vec<String>, ordered: bool) -> String {
            let mut children = children;
            if !ordered && !children.is_empty() {
                let by = self.choose(children.len());
                children.rotate_left(by);
            }
            if children.is_empty() && self.choose(2) == 0 {
                return format!("<{tag}/>");
            }
            let mut out = format!("<{tag}>");
            for child in children {
                out.push_str(JUNK[self.choose(JUNK.len())]);
                out.push_str(&child);
            }
            out.push_str(JUNK[self.choose(JUNK.len())]);
            out.push_str(&format!("</{tag}>"));
            out
        }

        fn distro(&mut self, w: &WslDistro) -> String {
            let mut c = vec![
                self.string("distro_name", &w.distro_name),
                self.integer("distro_version", w.boinc_buda_runner_version),
                self.string("docker_version", &w.docker_version),
            ];
            c.extend(self.boolean("disallowed", w.disallowed));
            c.extend(self.docker_type("docker_type", w.docker_type));
            self.block("distro", c, false)
        }

        fn host_info(&mut self, h: &HostInfo) -> String {
            let mut c = Vec::new();
            c.extend(self.docker_type("docker_type", h.docker_type));
            if !h.wsl_distros.is_empty() || self.choose(2) == 0 {
                let distros = h.wsl_distros.iter().map(|w| self.distro(w)).collect();
                c.push(self.block("wsl", distros, true));
            }
            self.block("host_info", c, false)
        }

        fn proxy_info(&mut self, p: &ProxyInfo) -> String {
            let mut c = vec![
                self.string("socks_server_name", &p.socks_server_name),
                self.integer("socks_server_port", p.socks_server_port),
                self.string("http_server_name", &p.http_server_name),
                self.integer("http_server_port", p.http_server_port),
                self.string("socks5_user_name", &p.socks5_user_name),
                self.string("socks5_user_passwd", &p.socks5_user_passwd),
                self.string("http_user_name", &p.http_user_name),
                self.string("http_user_passwd", &p.http_user_passwd),
                self.string("no_proxy", &p.no_proxy),
            ];
            c.extend(self.boolean("use_http_proxy", p.use_http_proxy));
            c.extend(self.boolean("use_socks_proxy", p.use_socks_proxy));
            c.extend(self.boolean("socks5_remote_dns", p.socks5_remote_dns));
            self.block("proxy_info", c, false)
        }

        fn document(&mut self, d: &InitData) -> String {
            let mut c = vec![
                self.string("project_dir", &d.project_dir),
                self.string("boinc_dir", &d.boinc_dir),
                self.string("wu_name", &d.wu_name),
                self.string("result_name", &d.result_name),
                self.number("wu_cpu_time", d.wu_cpu_time),
                self.number("ncpus", d.ncpus),
                self.number("rsc_memory_bound", d.rsc_memory_bound),
                self.number("rsc_disk_bound", d.rsc_disk_bound),
                self.string("gpu_type", &d.gpu_type),
                self.integer("gpu_device_num", d.gpu_device_num),
                self.host_info(&d.host_info),
            ];
            c.extend(d.proxy_info.as_ref().map(|p| self.proxy_info(p)));
            let doc = self.block("app_init_data", c, false);
            let prolog = [
                "",
                "\u{feff}",
                "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<!-- hi -->\n",
                " \n",
            ][self.choose(4)];
            let trailer = ["", "\n", "\n<junk>\0\u{1}"][self.choose(3)];
            format!("{prolog}{doc}{trailer}")
        }
    }

    /// Every non-text field with the path errors give for it.
    const TYPED_FIELDS: &[&str] = &[
        "wu_cpu_time",
        "ncpus",
        "rsc_memory_bound",
        "rsc_disk_bound",
        "gpu_device_num",
        "host_info/docker_type",
        "host_info/wsl/distro/distro_version",
        "host_info/wsl/distro/disallowed",
        "host_info/wsl/distro/docker_type",
        "proxy_info/use_http_proxy",
        "proxy_info/use_socks_proxy",
        "proxy_info/socks_server_port",
        "proxy_info/http_server_port",
        "proxy_info/socks5_remote_dns",
    ];

    // Case counts: each block's cost measured, so that all the crate's
    // property tests together take a few seconds (see `config`).
    proptest! {
        #![proptest_config(config(4096))]

        #[test]
        fn arbitrary_bytes_never_panic(bytes in vec(any::<u8>(), 0..2048)) {
            check_parse(&String::from_utf8_lossy(&bytes))?;
        }

        #[test]
        fn arbitrary_text_in_the_root_never_panics(body in any::<String>()) {
            check_parse(&tests::wrap(&body))?;
        }

        #[test]
        fn xml_token_soup_never_panics(soup in token_soup(), rooted in any::<bool>()) {
            let xml = if rooted { tests::wrap(&soup) } else { soup };
            check_parse(&xml)?;
        }
    }

    proptest! {
        #![proptest_config(config(2048))]

        #[test]
        fn damaged_samples_parse_or_give_a_readable_error(
            sample in sample(),
            mutations in vec(mutation(), 1..6),
        ) {
            let mut bytes = sample.as_bytes().to_vec();
            for m in &mutations {
                apply(&mut bytes, m);
            }
            // As `load` reads a file: bytes that are not UTF-8 are replaced.
            check_parse(&String::from_utf8_lossy(&bytes))?;
        }

        #[test]
        fn bad_typed_values_name_their_tag(
            path in select(TYPED_FIELDS),
            garbage in "[a-zA-Z][a-zA-Z ]{0,200}",
        ) {
            let names: Vec<&str> = path.split('/').collect();
            let opens: String = names.iter().map(|n| format!("<{n}>")).collect();
            let closes: String = names.iter().rev().map(|n| format!("</{n}>")).collect();
            let xml = tests::wrap(&format!("{opens}{garbage}{closes}"));
            let err = InitData::parse(&xml).unwrap_err();
            prop_assert!(
                matches!(&err, InitDataError::BadValue { tag, .. } if tag == path),
                "{err:?}"
            );
            let message = err.to_string();
            check_message(&message)?;
            prop_assert!(message.contains(&format!("<{}>", names[names.len() - 1])), "{message}");
        }
    }

    proptest! {
        // About 4 ms a case, most of it generating long strings.
        #![proptest_config(config(512))]

        #[test]
        fn written_documents_read_back(
            d in init_data(),
            choices in vec(any::<u8>(), 1..64),
        ) {
            let xml = Writer { choices, next: 0 }.document(&d);
            match InitData::parse(&xml) {
                Ok(parsed) => prop_assert_eq!(parsed, d, "from {}", xml),
                Err(e) => prop_assert!(false, "{} in {}", e, xml),
            }
        }
    }

    /// The inputs that once made unbounded or multi-line messages.
    #[test]
    fn echoed_tag_names_are_short_and_on_one_line() {
        let long = "t".repeat(10_000);
        for xml in [
            format!("</{long}>"),
            format!("<app_init_data><gpu_device_num>1</{long}></app_init_data>"),
            format!("<app_init_data><{long}>"),
            format!("<app_init_data><gpu_device_num><{long}>"),
            "<app_init_data><gpu_device_num>1</a\nb></app_init_data>".to_string(),
            "</a\nb>".to_string(),
        ] {
            let message = InitData::parse(&xml).unwrap_err().to_string();
            check_message(&message).unwrap_or_else(|e| panic!("{e}"));
        }
    }
}
