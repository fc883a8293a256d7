//! `init_data.xml` as the BOINC client writes it into the slot dir.
//!
//! The layout follows the client's writer (`write_init_data_file` in
//! lib/app_ipc.cpp, `HOST_INFO::write`, `GLOBAL_PREFS::write`): the same
//! elements in the same order, numbers printed like C's `%f`. Like the client,
//! paths and names are written as they are, without XML escaping; only
//! `user_name` and `team_name` are escaped.

use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};

pub const INIT_DATA_FILE_NAME: &str = "init_data.xml";
pub const MIB: f64 = 1024.0 * 1024.0;
pub const GIB: f64 = 1024.0 * MIB;

/// `host_info.docker_type` as the 8.x client writes it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DockerType {
    None = 0,
    Docker = 1,
    Podman = 2,
}

/// The docker fields an 8.x client adds to `<host_info>` when it found an engine.
#[derive(Clone, Debug, PartialEq)]
pub struct DockerHostInfo {
    /// As the client extracts it from `<cli> --version` (e.g. "4.3.1", "20.10.24+dfsg1").
    pub version: String,
    pub docker_type: DockerType,
}

/// Client release written as major/minor/release.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClientVersion {
    pub major: u32,
    pub minor: u32,
    pub release: u32,
}

impl ClientVersion {
    /// Debian 12's client: knows nothing about docker.
    pub const V7_20_5: ClientVersion = ClientVersion {
        major: 7,
        minor: 20,
        release: 5,
    };
    /// A client with docker support (writes `docker_version`/`docker_type`).
    pub const V8_2_4: ClientVersion = ClientVersion {
        major: 8,
        minor: 2,
        release: 4,
    };
}

/// The fields of `init_data.xml` a test may want to vary. Everything else is
/// written with plausible fixed values.
#[derive(Clone, Debug)]
pub struct InitData {
    pub client_version: ClientVersion,
    pub app_version: u32,
    pub app_name: String,
    pub plan_class: String,
    pub user_name: String,
    pub team_name: String,
    /// Absolute path of `projects/<project_dir_name>`.
    pub project_dir: PathBuf,
    /// Absolute path of the BOINC data dir.
    pub boinc_dir: PathBuf,
    pub authenticator: String,
    pub wu_name: String,
    pub result_name: String,
    /// -1 makes the app map `boinc_mmap_file` in the slot dir.
    pub shm_key: i32,
    pub slot: u32,
    pub client_pid: u32,
    /// CPU time of earlier runs (the last checkpoint); the client updates it on each restart.
    pub wu_cpu_time: f64,
    pub starting_elapsed_time: f64,
    pub checkpoint_period: f64,
    pub gpu_type: String,
    pub gpu_device_num: i32,
    pub gpu_opencl_dev_index: i32,
    pub gpu_usage: f64,
    pub ncpus: f64,
    pub rsc_fpops_est: f64,
    pub rsc_fpops_bound: f64,
    pub rsc_memory_bound: f64,
    pub rsc_disk_bound: f64,
    pub computation_deadline: f64,
    /// `None` writes no docker fields (7.20 clients, or no engine found).
    pub docker: Option<DockerHostInfo>,
    /// Raw XML inserted before `</app_init_data>` (e.g. a `<proxy_info>` block).
    pub extra_xml: String,
}

impl InitData {
    pub fn new(
        boinc_dir: &Path,
        project_dir: &Path,
        wu_name: &str,
        result_name: &str,
        slot: u32,
    ) -> InitData {
        InitData {
            client_version: ClientVersion::V8_2_4,
            app_version: 100,
            app_name: "docker_wrapper_test".to_string(),
            plan_class: String::new(),
            user_name: "Test User".to_string(),
            team_name: String::new(),
            project_dir: project_dir.to_path_buf(),
            boinc_dir: boinc_dir.to_path_buf(),
            authenticator: "0123456789abcdef0123456789abcdef".to_string(),
            wu_name: wu_name.to_string(),
            result_name: result_name.to_string(),
            shm_key: -1,
            slot,
            client_pid: std::process::id(),
            wu_cpu_time: 0.0,
            starting_elapsed_time: 0.0,
            checkpoint_period: 60.0,
            gpu_type: String::new(),
            gpu_device_num: -1,
            gpu_opencl_dev_index: -1,
            gpu_usage: 0.0,
            ncpus: 1.0,
            rsc_fpops_est: 1e12,
            rsc_fpops_bound: 1e15,
            rsc_memory_bound: 512.0 * MIB,
            rsc_disk_bound: 2.0 * GIB,
            computation_deadline: unix_now() + 7.0 * 86400.0,
            docker: None,
            extra_xml: String::new(),
        }
    }

    pub fn to_xml(&self) -> String {
        let mut x = String::new();
        self.write_header(&mut x);
        self.write_names(&mut x);
        self.write_numbers(&mut x);
        x.push_str(&host_info_xml(self.docker.as_ref()));
        x.push_str(GLOBAL_PREFS_XML);
        x.push_str(&self.extra_xml);
        x.push_str("</app_init_data>\n");
        x
    }

    pub fn write_to(&self, slot_dir: &Path) -> std::io::Result<()> {
        fs::write(slot_dir.join(INIT_DATA_FILE_NAME), self.to_xml())
    }

    fn write_header(&self, x: &mut String) {
        let v = self.client_version;
        x.push_str("<app_init_data>\n");
        tag(x, "major_version", v.major);
        tag(x, "minor_version", v.minor);
        tag(x, "release", v.release);
        tag(x, "app_version", self.app_version);
        tag(x, "userid", 1);
        tag(x, "teamid", 0);
        tag(x, "hostid", 1);
    }

    fn write_names(&self, x: &mut String) {
        tag(x, "app_name", &self.app_name);
        if !self.plan_class.is_empty() {
            tag(x, "plan_class", &self.plan_class);
        }
        if !self.team_name.is_empty() {
            tag(x, "team_name", xml_escape(&self.team_name));
        }
        if !self.user_name.is_empty() {
            tag(x, "user_name", xml_escape(&self.user_name));
        }
        tag(x, "project_dir", self.project_dir.display());
        tag(x, "boinc_dir", self.boinc_dir.display());
        tag(x, "authenticator", &self.authenticator);
        tag(x, "wu_name", &self.wu_name);
        tag(x, "result_name", &self.result_name);
        tag(x, "shm_key", self.shm_key);
    }

    fn write_numbers(&self, x: &mut String) {
        tag(x, "slot", self.slot);
        tag(x, "client_pid", self.client_pid);
        tag(x, "wu_cpu_time", c_f(self.wu_cpu_time));
        tag(x, "starting_elapsed_time", c_f(self.starting_elapsed_time));
        tag(x, "using_sandbox", 0);
        tag(x, "vm_extensions_disabled", 0);
        tag(x, "user_total_credit", c_f(0.0));
        tag(x, "user_expavg_credit", c_f(0.0));
        tag(x, "host_total_credit", c_f(0.0));
        tag(x, "host_expavg_credit", c_f(0.0));
        tag(x, "resource_share_fraction", c_f(1.0));
        tag(x, "checkpoint_period", c_f(self.checkpoint_period));
        tag(x, "fraction_done_start", c_f(0.0));
        tag(x, "fraction_done_end", c_f(1.0));
        tag(x, "gpu_type", &self.gpu_type);
        tag(x, "gpu_device_num", self.gpu_device_num);
        tag(x, "gpu_opencl_dev_index", self.gpu_opencl_dev_index);
        tag(x, "gpu_usage", c_f(self.gpu_usage));
        tag(x, "ncpus", c_f(self.ncpus));
        tag(x, "rsc_fpops_est", c_f(self.rsc_fpops_est));
        tag(x, "rsc_fpops_bound", c_f(self.rsc_fpops_bound));
        tag(x, "rsc_memory_bound", c_f(self.rsc_memory_bound));
        tag(x, "rsc_disk_bound", c_f(self.rsc_disk_bound));
        tag(x, "computation_deadline", c_f(self.computation_deadline));
        tag(x, "vbox_window", 0);
        tag(x, "no_priority_change", 0);
        tag(x, "process_priority", -1);
        tag(x, "process_priority_special", -1);
    }
}

fn tag(x: &mut String, name: &str, value: impl std::fmt::Display) {
    let _ = writeln!(x, "<{name}>{value}</{name}>");
}

fn host_tag(x: &mut String, name: &str, value: impl std::fmt::Display) {
    let _ = writeln!(x, "    <{name}>{value}</{name}>");
}

/// The `<host_info>` block, filled from this machine where that is cheap.
pub fn host_info_xml(docker: Option<&DockerHostInfo>) -> String {
    let host = HostFacts::read();
    let mut x = String::from("<host_info>\n");
    host_tag(&mut x, "timezone", 0);
    host_tag(&mut x, "domain_name", &host.hostname);
    host_tag(&mut x, "ip_addr", "127.0.0.1");
    host_tag(&mut x, "host_cpid", "fedcba9876543210fedcba9876543210");
    host_tag(&mut x, "p_ncpus", host.ncpus);
    host_tag(&mut x, "p_vendor", xml_escape(&host.cpu_vendor));
    host_tag(&mut x, "p_model", xml_escape(&host.cpu_model));
    host_tag(&mut x, "p_features", "");
    host_tag(&mut x, "p_fpops", c_f(4e9));
    host_tag(&mut x, "p_iops", c_f(1.2e10));
    host_tag(&mut x, "p_membw", c_f(1e9));
    host_tag(&mut x, "p_calculated", c_f(unix_now()));
    host_tag(&mut x, "p_vm_extensions_disabled", 0);
    host_tag(&mut x, "m_nbytes", c_f(host.mem_bytes));
    host_tag(&mut x, "m_cache", c_f(8.0 * MIB));
    host_tag(&mut x, "m_swap", c_f(host.swap_bytes));
    host_tag(&mut x, "d_total", c_f(100.0 * GIB));
    host_tag(&mut x, "d_free", c_f(50.0 * GIB));
    host_tag(&mut x, "os_name", "Linux");
    host_tag(&mut x, "os_version", xml_escape(&host.os_version));
    host_tag(&mut x, "n_usable_coprocs", 0);
    if let Some(d) = docker {
        host_tag(&mut x, "docker_version", &d.version);
        host_tag(&mut x, "docker_type", d.docker_type as i32);
    }
    x.push_str("    <coprocs>\n    </coprocs>\n");
    x.push_str("</host_info>\n");
    x
}

/// Default preferences, a subset of what the client writes (apps rarely read them).
const GLOBAL_PREFS_XML: &str = "<global_preferences>
   <source_project></source_project>
   <mod_time>0.000000</mod_time>
   <run_on_batteries>1</run_on_batteries>
   <run_if_user_active>1</run_if_user_active>
   <run_gpu_if_user_active>0</run_gpu_if_user_active>
   <suspend_cpu_usage>25.000000</suspend_cpu_usage>
   <leave_apps_in_memory>0</leave_apps_in_memory>
   <max_ncpus_pct>100.000000</max_ncpus_pct>
   <cpu_scheduling_period_minutes>60.000000</cpu_scheduling_period_minutes>
   <disk_max_used_gb>0.000000</disk_max_used_gb>
   <disk_max_used_pct>90.000000</disk_max_used_pct>
   <disk_min_free_gb>0.100000</disk_min_free_gb>
   <ram_max_used_busy_pct>50.000000</ram_max_used_busy_pct>
   <ram_max_used_idle_pct>90.000000</ram_max_used_idle_pct>
   <cpu_usage_limit>100.000000</cpu_usage_limit>
</global_preferences>
";

struct HostFacts {
    hostname: String,
    ncpus: usize,
    cpu_vendor: String,
    cpu_model: String,
    mem_bytes: f64,
    swap_bytes: f64,
    os_version: String,
}

impl HostFacts {
    fn read() -> HostFacts {
        let cpuinfo = fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let meminfo = fs::read_to_string("/proc/meminfo").unwrap_or_default();
        HostFacts {
            hostname: read_trimmed("/proc/sys/kernel/hostname")
                .unwrap_or_else(|| "localhost".into()),
            ncpus: std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1),
            cpu_vendor: proc_field(&cpuinfo, "vendor_id").unwrap_or_else(|| "unknown".into()),
            cpu_model: proc_field(&cpuinfo, "model name").unwrap_or_else(|| "unknown".into()),
            mem_bytes: meminfo_bytes(&meminfo, "MemTotal").unwrap_or(4.0 * GIB),
            swap_bytes: meminfo_bytes(&meminfo, "SwapTotal").unwrap_or(0.0),
            os_version: read_trimmed("/proc/sys/kernel/osrelease").unwrap_or_default(),
        }
    }
}

fn read_trimmed(path: &str) -> Option<String> {
    fs::read_to_string(path).ok().map(|s| s.trim().to_string())
}

/// First `key : value` line of a /proc file.
fn proc_field(text: &str, key: &str) -> Option<String> {
    text.lines().find_map(|line| {
        let (k, v) = line.split_once(':')?;
        (k.trim() == key).then(|| v.trim().to_string())
    })
}

/// `/proc/meminfo` values are in KiB.
fn meminfo_bytes(meminfo: &str, key: &str) -> Option<f64> {
    let value = proc_field(meminfo, key)?;
    let kib: f64 = value.split_whitespace().next()?.parse().ok()?;
    Some(kib * 1024.0)
}

fn unix_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// C's `%f`.
pub fn c_f(x: f64) -> String {
    format!("{x:.6}")
}

/// C's `%e` (e.g. `1.500000e+06`), the format of the numbers in channel messages.
pub fn c_e(x: f64) -> String {
    let s = format!("{x:.6e}");
    match s.split_once('e') {
        Some((mantissa, exp)) => {
            let exp: i32 = exp.parse().unwrap_or(0);
            let sign = if exp < 0 { '-' } else { '+' };
            format!("{mantissa}e{sign}{:02}", exp.abs())
        }
        None => s, // inf, NaN
    }
}

pub fn xml_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            _ => out.push(c),
        }
    }
    out
}
