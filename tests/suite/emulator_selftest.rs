//! Tests of the client emulator itself: no container engine, no wrapper needed.

use std::fs;
use std::time::Instant;

use dw_test_support::client::{heartbeat_text, tag_text};
use dw_test_support::engine::version_from_cli_output;
use dw_test_support::init_data::c_e;
use dw_test_support::shm::{CHANNEL_SIZE, MAX_MESSAGE_LEN, MMAP_FILE_NAME, MMAP_FILE_SIZE};
use dw_test_support::slot::soft_link_text;
use dw_test_support::*;

fn new_shm(dir: &TempDir) -> (SharedMemory, SharedMemory) {
    let path = dir.path().join(MMAP_FILE_NAME);
    let client = SharedMemory::create(&path).unwrap();
    let app = SharedMemory::open(&path).unwrap();
    (client, app)
}

#[test]
fn mmap_file_is_8_channels_of_1_kib() {
    let _claim = Claim::no_engine();
    let dir = TempDir::new("shm_layout").unwrap();
    let (client, _app) = new_shm(&dir);
    assert_eq!(
        fs::metadata(client.path()).unwrap().len(),
        MMAP_FILE_SIZE as u64
    );
    assert_eq!(MMAP_FILE_SIZE, 8192);

    client.try_send(Channel::Heartbeat, "<heartbeat/>").unwrap();
    let bytes = fs::read(client.path()).unwrap();
    let at = 4 * CHANNEL_SIZE;
    assert_eq!(bytes[at], 1, "flag at byte 0 of the heartbeat channel");
    assert_eq!(&bytes[at + 1..at + 13], b"<heartbeat/>");
    assert_eq!(bytes[at + 13], 0, "NUL-terminated");
    assert!(
        bytes[..at].iter().all(|&b| b == 0),
        "other channels untouched"
    );
}

#[test]
fn channel_round_trip_both_directions() {
    let _claim = Claim::no_engine();
    let dir = TempDir::new("shm_round_trip").unwrap();
    let (client, app) = new_shm(&dir);

    assert_eq!(app.receive(Channel::ProcessControlRequest).unwrap(), None);
    client
        .try_send(Channel::ProcessControlRequest, "<suspend/>")
        .unwrap();
    assert!(app.has_message(Channel::ProcessControlRequest).unwrap());
    assert_eq!(
        app.receive(Channel::ProcessControlRequest)
            .unwrap()
            .as_deref(),
        Some("<suspend/>")
    );
    assert!(
        !client.has_message(Channel::ProcessControlRequest).unwrap(),
        "receive clears the flag"
    );

    // A shorter message after a longer one: the NUL ends it.
    client
        .try_send(Channel::ProcessControlRequest, "<quit/>")
        .unwrap();
    assert_eq!(
        app.receive(Channel::ProcessControlRequest)
            .unwrap()
            .as_deref(),
        Some("<quit/>")
    );

    let status = "<current_cpu_time>1.500000e+00</current_cpu_time>\n";
    assert!(app.try_send(Channel::AppStatus, status).unwrap());
    assert_eq!(
        client.receive(Channel::AppStatus).unwrap().as_deref(),
        Some(status)
    );
}

#[test]
fn busy_channel_is_not_overwritten() {
    let _claim = Claim::no_engine();
    let dir = TempDir::new("shm_busy").unwrap();
    let (client, app) = new_shm(&dir);
    assert!(client
        .try_send(Channel::ProcessControlRequest, "<suspend/>")
        .unwrap());
    assert!(!client
        .try_send(Channel::ProcessControlRequest, "<resume/>")
        .unwrap());

    let started = Instant::now();
    let sent = client
        .send(
            Channel::ProcessControlRequest,
            "<resume/>",
            Duration::from_millis(100),
        )
        .unwrap();
    assert!(sent.is_none(), "times out while the app does not read");
    assert!(started.elapsed() >= Duration::from_millis(100));
    assert_eq!(
        app.receive(Channel::ProcessControlRequest)
            .unwrap()
            .as_deref(),
        Some("<suspend/>")
    );
    assert!(client
        .send(
            Channel::ProcessControlRequest,
            "<resume/>",
            Duration::from_millis(100)
        )
        .unwrap()
        .is_some());
}

#[test]
fn overlong_message_is_refused() {
    let _claim = Claim::no_engine();
    let dir = TempDir::new("shm_long").unwrap();
    let (client, _app) = new_shm(&dir);
    assert!(client
        .try_send(Channel::TrickleDown, &"x".repeat(MAX_MESSAGE_LEN))
        .unwrap());
    client.clear_all().unwrap();
    assert!(client
        .try_send(Channel::TrickleDown, &"x".repeat(MAX_MESSAGE_LEN + 1))
        .is_err());
}

#[test]
fn create_clears_an_existing_file() {
    let _claim = Claim::no_engine();
    let dir = TempDir::new("shm_reset").unwrap();
    let path = dir.path().join(MMAP_FILE_NAME);
    fs::write(&path, vec![7u8; 100]).unwrap();
    let shm = SharedMemory::create(&path).unwrap();
    assert!(Channel::ALL.iter().all(|&c| !shm.has_message(c).unwrap()));
    assert!(fs::read(&path).unwrap().iter().all(|&b| b == 0));
}

/// A small checker: balanced tags, no stray `<`/`&` in text.
fn assert_well_formed(xml: &str) {
    let mut stack: Vec<&str> = Vec::new();
    let mut rest = xml;
    while let Some(open) = rest.find('<') {
        check_text(&rest[..open]);
        let close = rest[open..].find('>').expect("unclosed <") + open;
        let inner = &rest[open + 1..close];
        if let Some(name) = inner.strip_prefix('/') {
            assert_eq!(stack.pop(), Some(name), "mismatched </{name}>");
        } else if !inner.ends_with('/') {
            stack.push(inner);
        }
        rest = &rest[close + 1..];
    }
    check_text(rest);
    assert!(stack.is_empty(), "unclosed tags: {stack:?}");
}

fn check_text(text: &str) {
    assert!(!text.contains('>'), "stray > in {text:?}");
    for (i, _) in text.match_indices('&') {
        let entity = &text[i..];
        assert!(
            ["&amp;", "&lt;", "&gt;", "&quot;", "&apos;"]
                .iter()
                .any(|e| entity.starts_with(e)),
            "bare & in {text:?}"
        );
    }
}

#[test]
fn init_data_is_well_formed_and_complete() {
    let _claim = Claim::no_engine();
    let task = Task::builder("init_data_fields", "/bin/true")
        .program_exact("/bin/true")
        .ncpus(2.0)
        .memory_bound(256.0 * MIB)
        .gpu("NVIDIA", 1)
        .docker_host_info(Some(DockerHostInfo {
            version: "4.3.1".into(),
            docker_type: DockerType::Podman,
        }))
        .edit_init_data(|d| d.user_name = "A & B <team>".into())
        .prepare()
        .unwrap();
    let xml = task.init_data_xml();
    assert_well_formed(&xml);
    assert!(xml.starts_with("<app_init_data>\n") && xml.ends_with("</app_init_data>\n"));

    let field = |name: &str| tag_text(&xml, name).map(str::to_string);
    assert_eq!(
        field("project_dir").as_deref(),
        Some(task.project_dir().to_str().unwrap())
    );
    assert_eq!(
        field("boinc_dir").as_deref(),
        Some(task.data_dir().to_str().unwrap())
    );
    assert!(task.project_dir().ends_with("projects/example.org_test"));
    assert!(task.slot_dir().ends_with("slots/0"));
    assert_eq!(field("wu_name").as_deref(), Some(task.wu_name()));
    assert_eq!(field("result_name").as_deref(), Some(task.result_name()));
    assert!(task.wu_name().starts_with("wu_init_data_fields_"));
    assert_eq!(field("shm_key").as_deref(), Some("-1"));
    assert_eq!(field("slot").as_deref(), Some("0"));
    assert_eq!(field("client_pid"), Some(std::process::id().to_string()));
    assert_eq!(field("ncpus").as_deref(), Some("2.000000"));
    assert_eq!(
        field("rsc_memory_bound").as_deref(),
        Some("268435456.000000")
    );
    assert_eq!(field("gpu_type").as_deref(), Some("NVIDIA"));
    assert_eq!(field("gpu_device_num").as_deref(), Some("1"));
    assert_eq!(field("wu_cpu_time").as_deref(), Some("0.000000"));
    assert_eq!(
        field("user_name").as_deref(),
        Some("A &amp; B &lt;team&gt;")
    );
    let host = field("host_info").unwrap();
    assert_eq!(tag_text(&host, "docker_version"), Some("4.3.1"));
    assert_eq!(tag_text(&host, "docker_type"), Some("2"));
    assert_eq!(field("major_version").as_deref(), Some("8"));
}

#[test]
fn client_7_20_writes_no_docker_fields() {
    let _claim = Claim::no_engine();
    let task = Task::builder("init_data_7_20", "/bin/true")
        .program_exact("/bin/true")
        .client_7_20()
        .prepare()
        .unwrap();
    let xml = task.init_data_xml();
    assert_well_formed(&xml);
    assert!(!xml.contains("<docker_"), "{xml}");
    assert_eq!(tag_text(&xml, "major_version"), Some("7"));
    assert_eq!(tag_text(&xml, "minor_version"), Some("20"));
}

#[test]
fn default_names_are_unique_and_container_name_is_cpp_compatible() {
    let _claim = Claim::no_engine();
    let a = Task::builder("names", "/bin/true")
        .program_exact("/bin/true")
        .prepare()
        .unwrap();
    let b = Task::builder("names", "/bin/true")
        .program_exact("/bin/true")
        .prepare()
        .unwrap();
    assert_ne!(a.result_name(), b.result_name());
    assert_eq!(
        a.container_name(),
        format!("boinc__example.org_test__{}", a.result_name())
    );
    assert_eq!(
        container_name("Example.ORG_test", "WU Name:1_0"),
        "boinc__example.org_test__wu_name_1_0"
    );
}

#[test]
fn raw_init_data_is_written_verbatim() {
    let _claim = Claim::no_engine();
    let mut task = Task::builder("raw_init", "/bin/true")
        .program_exact("/bin/true")
        .raw_init_data("<app_init_data><slot>0</slo")
        .prepare()
        .unwrap();
    task.start().unwrap();
    task.wait_exit(Duration::from_secs(10)).unwrap();
    assert_eq!(
        task.read_slot_file("init_data.xml").as_deref(),
        Some("<app_init_data><slot>0</slo")
    );
}

#[test]
fn soft_link_file_has_the_client_format() {
    let _claim = Claim::no_engine();
    assert_eq!(
        soft_link_text("../../projects/example.org_test/in_data.txt"),
        "<soft_link>../../projects/example.org_test/in_data.txt</soft_link>\n"
    );
    let task = Task::builder("soft_link", "/bin/true")
        .program_exact("/bin/true")
        .input_file("data.txt", "payload")
        .project_file(
            "linked.txt",
            "phys_linked",
            "via symlink",
            LinkKind::Symlink,
        )
        .input_file("sub/nested.txt", "nested")
        .output_file("result.txt", "out_result")
        .prepare()
        .unwrap();
    let link = task.read_slot_file("data.txt").unwrap();
    assert_eq!(
        link,
        "<soft_link>../../projects/example.org_test/in_data.txt</soft_link>\n"
    );
    let target = tag_text(&link, "soft_link").unwrap();
    assert_eq!(
        fs::read_to_string(task.slot_dir().join(target)).unwrap(),
        "payload"
    );
    assert_eq!(
        fs::read_to_string(task.slot_dir().join("linked.txt")).unwrap(),
        "via symlink"
    );
    assert!(fs::symlink_metadata(task.slot_dir().join("linked.txt"))
        .unwrap()
        .file_type()
        .is_symlink());
    assert_eq!(
        task.read_slot_file("sub/nested.txt").unwrap(),
        "<soft_link>../../projects/example.org_test/in_sub_nested.txt</soft_link>\n"
    );
    assert_eq!(
        task.read_slot_file("result.txt").unwrap(),
        "<soft_link>../../projects/example.org_test/out_result</soft_link>\n"
    );
    assert!(task.read_project_file("out_result").is_none());
}

#[test]
fn odd_data_dir_name_is_used() {
    let _claim = Claim::no_engine();
    let task = Task::builder("odd_dir", "/bin/true")
        .program_exact("/bin/true")
        .data_dir_name(ODD_DATA_DIR_NAME)
        .prepare()
        .unwrap();
    assert!(task.data_dir().ends_with(ODD_DATA_DIR_NAME));
    assert!(task.slot_dir().join(MMAP_FILE_NAME).is_file());
}

#[test]
fn temp_dir_is_removed_on_drop() {
    let _claim = Claim::no_engine();
    let dir = TempDir::new("removal").unwrap();
    let path = dir.path().to_path_buf();
    fs::create_dir_all(path.join("a/b")).unwrap();
    fs::write(path.join("a/b/file"), "x").unwrap();
    // A job may leave read-only directories behind.
    fs::set_permissions(
        path.join("a"),
        std::os::unix::fs::PermissionsExt::from_mode(0o500),
    )
    .unwrap();
    drop(dir);
    if std::env::var_os(dw_test_support::tempdir::KEEP_DIRS_VAR).is_none() {
        assert!(!path.exists(), "{} still exists", path.display());
    }
}

#[test]
fn task_dirs_are_removed_on_drop() {
    let _claim = Claim::no_engine();
    let task = Task::builder("task_removal", "/bin/true")
        .program_exact("/bin/true")
        .prepare()
        .unwrap();
    let data_dir = task.data_dir().to_path_buf();
    assert!(data_dir.is_dir());
    drop(task);
    if std::env::var_os(dw_test_support::tempdir::KEEP_DIRS_VAR).is_none() {
        assert!(!data_dir.exists());
    }
}

#[test]
fn app_status_parses_what_the_api_writes() {
    let _claim = Claim::no_engine();
    // boinc_report_app_status_aux's format.
    let text = "<current_cpu_time>1.234500e+01</current_cpu_time>\n\
                <checkpoint_cpu_time>1.000000e+01</checkpoint_cpu_time>\n\
                <fraction_done>2.500000e-01</fraction_done>\n\
                <wss>1048576.000000</wss>\n";
    let s = AppStatus::parse(text);
    assert_eq!(s.current_cpu_time, 12.345);
    assert_eq!(s.checkpoint_cpu_time, 10.0);
    assert_eq!(s.fraction_done, Some(0.25));
    assert_eq!(s.working_set_size, Some(1048576.0));
    assert_eq!(s.want_network, None);
    // update_app_progress's format (no fraction done until the app sets one).
    let s = AppStatus::parse("<current_cpu_time>0.000000e+00</current_cpu_time>\n<checkpoint_cpu_time>0.000000e+00</checkpoint_cpu_time>\n<want_network>0</want_network>\n");
    assert_eq!(s.fraction_done, None);
    assert_eq!(s.want_network, Some(false));
}

#[test]
fn numbers_and_heartbeat_look_like_the_client() {
    let _claim = Claim::no_engine();
    assert_eq!(c_e(0.0), "0.000000e+00");
    assert_eq!(c_e(1536.0), "1.536000e+03");
    assert_eq!(c_e(0.00025), "2.500000e-04");
    let hb = heartbeat_text(std::process::id(), true);
    assert!(hb.starts_with("<heartbeat/><wss>"), "{hb}");
    assert!(
        hb.ends_with("</max_wss><network_suspended/><suspend_network/>"),
        "{hb}"
    );
    let hb = heartbeat_text(std::process::id(), false);
    assert!(
        !hb.contains("network_suspended") && !hb.contains("suspend_network"),
        "{hb}"
    );
}

#[test]
fn engine_version_is_parsed_like_the_client() {
    let _claim = Claim::no_engine();
    assert_eq!(
        version_from_cli_output("podman version 4.3.1\n").as_deref(),
        Some("4.3.1")
    );
    assert_eq!(
        version_from_cli_output("Docker version 20.10.24+dfsg1, build 297e128\n").as_deref(),
        Some("20.10.24+dfsg1")
    );
    assert_eq!(
        version_from_cli_output("Emulate Docker CLI using podman.\npodman version 4.3.1\n")
            .as_deref(),
        Some("4.3.1")
    );
    assert_eq!(version_from_cli_output("nonsense"), None);
}

#[test]
fn job_dir_has_dockerfile_busybox_and_script() {
    let _claim = Claim::no_engine();
    let dir = TempDir::new("job_files").unwrap();
    let job = TestJob::shell("echo \"$@\"")
        .job_toml("verbose = 1\n")
        .file("data/in.txt", "x");
    job.write_to(dir.path()).unwrap_or_else(|e| panic!("{e}"));
    let dockerfile = fs::read_to_string(dir.path().join("Dockerfile")).unwrap();
    assert!(
        dockerfile.starts_with("FROM scratch\nCOPY busybox /bin/busybox\n"),
        "{dockerfile}"
    );
    assert!(dockerfile.contains("WORKDIR /app\n") && dockerfile.contains("$ARGS"));
    assert!(dir.path().join("busybox").is_file());
    assert_eq!(
        fs::read_to_string(dir.path().join("main.sh")).unwrap(),
        "#!/bin/sh\necho \"$@\"\n"
    );
    assert_eq!(
        fs::read_to_string(dir.path().join("job.toml")).unwrap(),
        "verbose = 1\n"
    );
    assert_eq!(
        fs::read_to_string(dir.path().join("data/in.txt")).unwrap(),
        "x"
    );
}

#[test]
fn job_files_are_copied_or_linked_into_the_slot() {
    let _claim = Claim::no_engine();
    let copied = Task::builder("job_copy", "/bin/true")
        .program_exact("/bin/true")
        .job(TestJob::shell("true"))
        .prepare()
        .unwrap();
    assert!(copied
        .read_slot_file("Dockerfile")
        .unwrap()
        .starts_with("FROM scratch"));
    assert!(copied.slot_dir().join("busybox").is_file());

    let linked = Task::builder("job_link", "/bin/true")
        .program_exact("/bin/true")
        .job(TestJob::shell("true"))
        .app_files_as(LinkKind::SoftLinkFile)
        .prepare()
        .unwrap();
    assert_eq!(
        linked.read_slot_file("Dockerfile").unwrap(),
        "<soft_link>../../projects/example.org_test/Dockerfile</soft_link>\n"
    );
    assert!(linked.project_dir().join("busybox").is_file());
}

/// A stand-in for the wrapper: a shell that sleeps, while the test plays the app's side.
fn fake_app(test: &str, script: &str) -> Task {
    Task::builder(test, "/bin/sh")
        .program_exact("/bin/sh")
        .args(["-c", script, "fake_app", "arg one", "arg2"])
        .start()
        .unwrap()
}

#[test]
fn client_thread_sends_heartbeats_and_reads_status() {
    let _claim = Claim::no_engine();
    let task = fake_app("client_thread", "sleep 20");
    let app = SharedMemory::open(&task.slot_dir().join(MMAP_FILE_NAME)).unwrap();

    let heartbeat = wait_until(Duration::from_secs(3), || {
        app.receive(Channel::Heartbeat).unwrap()
    })
    .expect("no heartbeat");
    assert!(heartbeat.starts_with("<heartbeat/>"), "{heartbeat}");
    assert!(!heartbeat.contains("network_suspended") && !heartbeat.contains("suspend_network"));

    task.set_network_suspended(true);
    let heartbeat = wait_until(Duration::from_secs(3), || {
        app.receive(Channel::Heartbeat).unwrap()
    })
    .unwrap();
    assert!(
        heartbeat.contains("<network_suspended/>") && heartbeat.contains("<suspend_network/>"),
        "{heartbeat}"
    );

    app.try_send(Channel::AppStatus, "<current_cpu_time>2.000000e+00</current_cpu_time>\n<checkpoint_cpu_time>1.000000e+00</checkpoint_cpu_time>\n<fraction_done>5.000000e-01</fraction_done>\n").unwrap();
    let status = task
        .wait_for_status(Duration::from_secs(3), |s| s.fraction_done == Some(0.5))
        .unwrap();
    assert_eq!(status.current_cpu_time, 2.0);
    assert_eq!(task.status_history().len(), 1);

    app.try_send(
        Channel::GraphicsReply,
        "<web_graphics_url>http://localhost:5000</web_graphics_url>",
    )
    .unwrap();
    assert_eq!(
        wait_until(Duration::from_secs(3), || task.web_graphics_url()).as_deref(),
        Some("http://localhost:5000")
    );

    let sent_at = task.send_control(Control::Suspend);
    assert!(sent_at.elapsed() < Duration::from_secs(1));
    assert_eq!(
        app.receive(Channel::ProcessControlRequest)
            .unwrap()
            .as_deref(),
        Some("<suspend/>")
    );
}

#[test]
fn heartbeats_can_be_switched_off() {
    let _claim = Claim::no_engine();
    let task = fake_app("no_heartbeat", "sleep 20");
    task.set_heartbeats(false);
    let app = SharedMemory::open(&task.slot_dir().join(MMAP_FILE_NAME)).unwrap();
    let _ = app.receive(Channel::Heartbeat);
    let before = task.heartbeats_sent();
    std::thread::sleep(Duration::from_millis(2500));
    assert_eq!(task.heartbeats_sent(), before);
    assert_eq!(app.receive(Channel::Heartbeat).unwrap(), None);
}

#[test]
fn outcome_reports_exit_files_and_logs() {
    let _claim = Claim::no_engine();
    let script = r#"echo "args: $1|$2" >&2; echo "in stderr.txt" > stderr.txt; printf '3\n' > boinc_finish_called; exit 3"#;
    let mut task = fake_app("outcome", script);
    let outcome = task.wait_exit(Duration::from_secs(10)).unwrap();
    assert_eq!(outcome.exit_code, Some(3));
    assert!(outcome.finished);
    assert_eq!(outcome.finish_code(), Some(3));
    assert_eq!(outcome.temporary_exit, None);
    assert_eq!(outcome.stderr_txt, "in stderr.txt\n");
    assert!(
        outcome.wrapper_output.contains("args: arg one|arg2"),
        "{}",
        outcome.describe()
    );
    assert!(!task.is_running());
}

#[test]
fn temporary_exit_is_reported_and_cleared_on_restart() {
    let _claim = Claim::no_engine();
    let script = r#"if [ -e boinc_temporary_exit ]; then exit 9; fi; printf '300\nengine not running\n' > boinc_temporary_exit; exit 0"#;
    let mut task = fake_app("temporary_exit", script);
    let outcome = task.wait_exit(Duration::from_secs(10)).unwrap();
    assert_eq!(outcome.temporary_exit_delay(), Some(300));
    assert_eq!(outcome.temporary_exit_reason(), Some("engine not running"));

    task.restart().unwrap();
    let second = task.wait_exit(Duration::from_secs(10)).unwrap();
    assert_eq!(
        second.exit_code,
        Some(0),
        "the client deletes boinc_temporary_exit before a restart"
    );
    assert_eq!(task.runs(), 2);
}

#[test]
fn restart_clears_channels_and_passes_checkpoint_cpu_time() {
    let _claim = Claim::no_engine();
    let mut task = fake_app("restart", "sleep 20");
    let app = SharedMemory::open(&task.slot_dir().join(MMAP_FILE_NAME)).unwrap();
    app.try_send(Channel::AppStatus, "<current_cpu_time>9.000000e+00</current_cpu_time>\n<checkpoint_cpu_time>7.500000e+00</checkpoint_cpu_time>\n").unwrap();
    task.wait_for_status(Duration::from_secs(3), |s| s.checkpoint_cpu_time == 7.5)
        .unwrap();
    task.set_heartbeats(false);
    task.send_control(Control::Quit); // nobody reads it: must be gone after the restart
    let killed = task.kill().unwrap();
    assert_eq!(killed.signal, Some(libc::SIGKILL));

    task.restart().unwrap();
    assert!(!app.has_message(Channel::ProcessControlRequest).unwrap());
    assert_eq!(
        tag_text(
            &task.read_slot_file("init_data.xml").unwrap(),
            "wu_cpu_time"
        ),
        Some("7.500000")
    );
    assert!(task.pid().is_some());
}

#[test]
fn wait_exit_timeout_kills_and_shows_logs() {
    let _claim = Claim::no_engine();
    let mut task = fake_app("timeout", "echo still working; sleep 30");
    let started = Instant::now();
    let err = task.wait_exit(Duration::from_millis(500)).unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(err.contains("did not exit"), "{err}");
    assert!(err.contains("still working"), "{err}");
    assert!(!task.is_running());
}
