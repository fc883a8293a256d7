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
use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use quick_xml::events::Event;
use quick_xml::Reader;

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

/// One WSL distribution on a Windows host (BOINC's `WSL_DISTRO`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct WslDistro {
    pub distro_name: String,
    pub os_name: String,
    pub os_version: String,
    pub wsl_version: i32,
    /// Written as `<distro_version>`: the version of the BOINC WSL distro
    /// ("boinc-buda-runner"), 0 for other distros.
    pub boinc_buda_runner_version: i32,
    pub is_default: bool,
    pub disallowed: bool,
    pub docker_version: String,
    pub docker_type: DockerType,
    pub docker_compose_version: String,
    pub docker_compose_type: DockerType,
}

/// The subset of the client's `<host_info>` the wrapper uses.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct HostInfo {
    pub p_ncpus: i32,
    pub m_nbytes: f64,
    pub os_name: String,
    pub os_version: String,
    pub docker_type: DockerType,
    pub docker_version: String,
    pub docker_compose_type: DockerType,
    pub docker_compose_version: String,
    /// Windows only: the `<wsl>` list.
    pub wsl_distros: Vec<WslDistro>,
}

/// The client's proxy settings (BOINC's `PROXY_INFO`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ProxyInfo {
    pub use_http_proxy: bool,
    pub use_socks_proxy: bool,
    pub use_http_auth: bool,
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
    pub app_name: String,
    pub plan_class: String,
    pub project_dir: String,
    pub boinc_dir: String,
    pub wu_name: String,
    pub result_name: String,
    pub slot: i32,
    pub client_pid: i32,
    /// Unix clients only; Windows clients write `<comm_obj_name>` instead.
    pub shm_key: Option<i32>,
    pub wu_cpu_time: f64,
    pub starting_elapsed_time: f64,
    pub checkpoint_period: f64,
    /// Kept exactly as written (0 when absent); callers treat a value <= 0
    /// as 1 CPU.
    pub ncpus: f64,
    pub rsc_memory_bound: f64,
    pub rsc_disk_bound: f64,
    pub gpu_type: String,
    pub gpu_device_num: i32,
    pub gpu_opencl_dev_index: i32,
    pub gpu_usage: f64,
    pub host_info: HostInfo,
    /// `Some` whenever the file has a `<proxy_info>` block (7.20 clients
    /// always write one, 8.x clients only when a proxy is configured).
    pub proxy_info: Option<ProxyInfo>,
    pub app_files: Vec<String>,
}

/// Why `init_data.xml` could not be used.
#[derive(Debug)]
pub enum InitDataError {
    Io { path: PathBuf, source: std::io::Error },
    TooLarge { path: PathBuf, bytes: u64 },
    /// Malformed XML; the text gives the position and what is wrong.
    Xml(String),
    BadValue { tag: String, value: String, expected: &'static str },
    MissingRoot,
}

impl fmt::Display for InitDataError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            InitDataError::Io { path, source } => {
                write!(f, "cannot read BOINC init data file {}: {source}", path.display())
            }
            InitDataError::TooLarge { path, bytes } => write!(
                f,
                "BOINC init data file {} is {bytes} bytes, more than the {} MiB an init_data.xml \
                 can plausibly be; refusing to read it",
                path.display(),
                MAX_FILE_BYTES / (1024 * 1024)
            ),
            InitDataError::Xml(what) => write!(f, "init_data.xml is not well-formed XML: {what}"),
            InitDataError::BadValue { tag, value, expected } => write!(
                f,
                "init_data.xml: <{tag}> contains {value:?}, but {expected} was expected"
            ),
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
        let io_err = |source| InitDataError::Io { path: path.to_path_buf(), source };
        let too_large = |bytes| InitDataError::TooLarge { path: path.to_path_buf(), bytes };
        let file = File::open(path).map_err(io_err)?;
        let declared = file.metadata().map_err(io_err)?.len();
        if declared > MAX_FILE_BYTES {
            return Err(too_large(declared));
        }
        // The size can change after the check (or be meaningless for a special
        // file), so bound the read itself as well.
        let mut bytes = Vec::with_capacity(declared as usize);
        file.take(MAX_FILE_BYTES + 1).read_to_end(&mut bytes).map_err(io_err)?;
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
    /// `HTTPS_PROXY` (`HTTP_PROXY` is deliberately not set, as in the C++
    /// wrapper, because CGI programs take it from request headers);
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
        Some(format!("http://{auth}{}", host_port(&pi.http_server_name, pi.http_server_port)))
    } else if pi.use_socks_proxy && !pi.socks_server_name.is_empty() {
        // socks5h: the proxy resolves host names, as the user asked.
        let scheme = if pi.socks5_remote_dns { "socks5h" } else { "socks5" };
        let auth = userinfo(&pi.socks5_user_name, &pi.socks5_user_passwd);
        Some(format!("{scheme}://{auth}{}", host_port(&pi.socks_server_name, pi.socks_server_port)))
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
            "app_name" => d.app_name = cur.string(e)?,
            "plan_class" => d.plan_class = cur.string(e)?,
            "project_dir" => d.project_dir = cur.string(e)?,
            "boinc_dir" => d.boinc_dir = cur.string(e)?,
            "wu_name" => d.wu_name = cur.string(e)?,
            "result_name" => d.result_name = cur.string(e)?,
            "slot" => d.slot = cur.number(e)?,
            "client_pid" => d.client_pid = cur.number(e)?,
            "shm_key" => d.shm_key = Some(cur.number(e)?),
            "wu_cpu_time" => d.wu_cpu_time = cur.number(e)?,
            "starting_elapsed_time" => d.starting_elapsed_time = cur.number(e)?,
            "checkpoint_period" => d.checkpoint_period = cur.number(e)?,
            "ncpus" => d.ncpus = cur.number(e)?,
            "rsc_memory_bound" => d.rsc_memory_bound = cur.number(e)?,
            "rsc_disk_bound" => d.rsc_disk_bound = cur.number(e)?,
            "gpu_type" => d.gpu_type = cur.string(e)?,
            "gpu_device_num" => d.gpu_device_num = cur.number(e)?,
            "gpu_opencl_dev_index" => d.gpu_opencl_dev_index = cur.number(e)?,
            "gpu_usage" => d.gpu_usage = cur.number(e)?,
            "host_info" => d.host_info = parse_host_info(cur, e)?,
            "proxy_info" => d.proxy_info = Some(parse_proxy_info(cur, e)?),
            "app_file" => d.app_files.push(cur.string(e)?),
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
            "p_ncpus" => h.p_ncpus = cur.number(e)?,
            "m_nbytes" => h.m_nbytes = cur.number(e)?,
            "os_name" => h.os_name = cur.string(e)?,
            "os_version" => h.os_version = cur.string(e)?,
            "docker_version" => h.docker_version = cur.string(e)?,
            "docker_type" => h.docker_type = cur.docker_type(e)?,
            "docker_compose_version" => h.docker_compose_version = cur.string(e)?,
            "docker_compose_type" => h.docker_compose_type = cur.docker_type(e)?,
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
            // 7.x clients wrote <name>/<version> for what 8.x calls
            // <os_name>/<os_version>.
            "os_name" | "name" => w.os_name = cur.string(e)?,
            "os_version" | "version" => w.os_version = cur.string(e)?,
            "wsl_version" => w.wsl_version = cur.number(e)?,
            "distro_version" => w.boinc_buda_runner_version = cur.number(e)?,
            "is_default" => w.is_default = cur.boolean(e)?,
            "disallowed" => w.disallowed = cur.boolean(e)?,
            "docker_version" => w.docker_version = cur.string(e)?,
            "docker_type" => w.docker_type = cur.docker_type(e)?,
            "docker_compose_version" => w.docker_compose_version = cur.string(e)?,
            "docker_compose_type" => w.docker_compose_type = cur.docker_type(e)?,
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
            "use_http_auth" => p.use_http_auth = cur.boolean(e)?,
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
        Cursor { reader, src, item_start: 0 }
    }

    fn next(&mut self) -> Result<Item<'a>> {
        loop {
            self.item_start = self.reader.buffer_position();
            let event = match self.reader.read_event() {
                Ok(event) => event,
                Err(e) => {
                    let at = self.reader.error_position();
                    return Err(self.malformed_at(at, &e.to_string()));
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
            let what = format!("found </{close}> where </{}> was expected", open.name);
            Err(self.malformed_at(self.item_start, &what))
        }
    }

    fn truncated(&self, open: &Elem) -> InitDataError {
        let what = format!("the file ends before </{}> (is it truncated?)", open.name);
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
    InitDataError::BadValue { tag: elem.path.clone(), value, expected }
}

fn lossy(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// 1-based line and column (in bytes) of a byte offset.
fn line_column(src: &str, offset: u64) -> (usize, usize) {
    let offset = usize::try_from(offset).unwrap_or(usize::MAX).min(src.len());
    let before = &src.as_bytes()[..offset];
    let line = before.iter().filter(|&&b| b == b'\n').count() + 1;
    let line_start = before.iter().rposition(|&b| b == b'\n').map_or(0, |p| p + 1);
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
}
