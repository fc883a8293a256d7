//! The host-wide sweep of the image cache on real Podman and real Docker:
//! once a project's directory is gone from the data dir (the client left the
//! project), the next sweep removes that project's images, while the other
//! projects' images stay, and so does every image this data dir's tasks
//! never used. A sweep runs at most once a day.
//!
//! The test has a data dir of its own and projects named after the engine,
//! the test and the pid, so the tests beside it (each with its own data dir)
//! are left alone: a sweep judges only the images its data dir's tasks used.

use std::path::PathBuf;
use std::time::SystemTime;

use dw_test_support::jobs::{default_dockerfile, BUSYBOX_ONLY_DOCKERFILE, DEFAULT_WORKDIR};
use dw_test_support::*;

const WRAPPER: &str = wrapper_path!();

const PROJECT_LABEL: &str = "boinc.docker_wrapper.project";
/// What the wrapper's log says when it sweeps.
const SWEEPING: &str = "sweeping the image cache";
const DAY: Duration = Duration::from_secs(24 * 3600);

on_both_engines!(gone_projects_images_are_swept_once_a_day);

/// A BOINC data dir on one engine, and every image its projects made,
/// removed when dropped (even when the test fails).
struct Host {
    engine: TestEngine,
    data_dir: PathBuf,
    /// Names of the projects whose images the test made.
    projects: Vec<String>,
    /// Images the test built itself, with the engine.
    foreign: Vec<String>,
    // Last: removed after the images.
    _root: TempDir,
}

impl Host {
    fn new(engine: &TestEngine) -> Host {
        let root = TempDir::new("sweep").expect("cannot create a temp dir");
        let data_dir = root.path().join("boinc_data");
        std::fs::create_dir_all(data_dir.join("projects")).unwrap();
        Host {
            engine: engine.clone(),
            data_dir,
            projects: Vec::new(),
            foreign: Vec::new(),
            _root: root,
        }
    }

    /// A project name of this test; its leftovers from an interrupted run are removed.
    fn project(&mut self, short: &str) -> String {
        let name = format!(
            "dwtest_sweep_{short}_{}_{}",
            self.engine.kind().name(),
            std::process::id()
        );
        self.projects.push(name.clone());
        self.remove_images_of(&name);
        name
    }

    /// Runs a task of `project` in the data dir to its end; it must succeed.
    fn run(&self, project: &str, wu_name: &str) -> Outcome {
        // One ENV line per project: its own image, and no build step shared
        // with other tests.
        let from = "FROM scratch\n";
        let dockerfile = default_dockerfile(DEFAULT_WORKDIR).replacen(
            from,
            &format!("{from}ENV DWTEST_PROJECT={project}\n"),
            1,
        );
        let job = TestJob::shell("echo job done").dockerfile(&dockerfile);
        let mut task = Task::builder(project, WRAPPER)
            .engine(&self.engine)
            .shared_data_dir(&self.data_dir)
            .project_dir_name(project)
            .wu_name(wu_name)
            .job(job)
            .start()
            .unwrap();
        let outcome = task.wait_exit(TASK_TIMEOUT).unwrap();
        outcome.noted(wu_name).assert_finished(0);
        self.engine.assert_no_container(&task);
        outcome
    }

    /// The client leaves the project: its directory goes.
    fn detach(&self, project: &str) {
        std::fs::remove_dir_all(self.data_dir.join("projects").join(project)).unwrap();
    }

    /// Makes the last sweep look two days old.
    fn a_day_passes(&self) {
        let stamp = self
            .data_dir
            .join("docker_wrapper")
            .join(format!("swept_{}", self.engine.kind().name()));
        let file = std::fs::File::options()
            .write(true)
            .open(&stamp)
            .unwrap_or_else(|e| panic!("no sweep time stamp {}: {e}", stamp.display()));
        file.set_modified(SystemTime::now() - 2 * DAY).unwrap();
    }

    /// The tagged cache images of `project`, without Podman's `localhost/`.
    fn images_of(&self, project: &str) -> Vec<String> {
        let filter = format!("reference=boinc_wrapper/{project}");
        let out = self
            .engine
            .run([
                "images",
                "--filter",
                &filter,
                "--format",
                "{{.Repository}}:{{.Tag}}",
            ])
            .unwrap();
        assert!(out.success(), "listing images failed: {}", out.stderr);
        out.stdout
            .lines()
            .map(|l| l.trim().trim_start_matches("localhost/").to_string())
            .filter(|l| !l.is_empty() && !l.contains("<none>"))
            .collect()
    }

    /// Builds `FROM scratch` + busybox as `tag` with a project label, as a
    /// cache image of another BOINC client on this engine looks.
    fn build_foreign(&mut self, tag: &str, project: &str) {
        let _ = self.engine.remove_image(tag);
        self.foreign.push(tag.to_string());
        self.engine
            .build_busybox_image(tag, BUSYBOX_ONLY_DOCKERFILE, &[(PROJECT_LABEL, project)]);
    }

    /// Every image with the project's label, tagged (by name) or not (by id).
    fn remove_images_of(&self, project: &str) {
        self.engine
            .remove_labelled_images(&format!("{PROJECT_LABEL}={project}"));
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        for project in &self.projects {
            self.remove_images_of(project);
        }
        for tag in &self.foreign {
            if let Err(e) = self.engine.remove_image(tag) {
                eprintln!("warning: cannot remove test image {tag}: {e}");
            }
        }
    }
}

fn gone_projects_images_are_swept_once_a_day(kind: EngineKind) {
    let engine = TestEngine::require(kind);
    let mut host = Host::new(&engine);
    let gone = host.project("gone");
    let stay = host.project("stay");
    let later = host.project("later");
    let other_client = host.project("other_client");

    // A project's task builds its image; then the client leaves the project.
    // (The first task in a data dir sweeps: nothing of ours to remove yet.)
    let first = host.run(&gone, "wu_gone");
    first.assert_said(&[SWEEPING]);
    let gone_images = host.images_of(&gone);
    assert_eq!(gone_images.len(), 1, "{}", first.describe());
    host.detach(&gone);
    // A cache image this data dir's tasks never used (another client's):
    // its project dir is not here either, yet it is not ours to remove.
    let foreign = format!("boinc_wrapper/{other_client}:0123456789abcdef01234567");
    host.build_foreign(&foreign, &other_client);

    // A day later, another project's task sweeps.
    host.a_day_passes();
    let swept = host.run(&stay, "wu_stay_1");
    swept.noted("no sweep after a day").assert_said(&[SWEEPING]);
    assert_eq!(
        host.images_of(&gone),
        Vec::<String>::new(),
        "the images of the gone project should be removed\n{}",
        swept.describe()
    );
    let stay_images = host.images_of(&stay);
    assert_eq!(
        stay_images.len(),
        1,
        "the running project's image should stay\n{}",
        swept.describe()
    );
    assert!(
        engine.image_exists(&foreign),
        "{foreign}, never used by this data dir's tasks, was removed\n{}",
        swept.describe()
    );

    // Within the day, no task sweeps again: a newly gone project's image stays.
    let built = host.run(&later, "wu_later");
    built
        .noted("swept twice in a day")
        .assert_not_said(&[SWEEPING]);
    host.detach(&later);
    let again = host.run(&stay, "wu_stay_2");
    again
        .noted("swept twice in a day")
        .assert_not_said(&[SWEEPING]);
    assert_eq!(host.images_of(&later).len(), 1, "{}", again.describe());

    // The next day it goes.
    host.a_day_passes();
    let next_day = host.run(&stay, "wu_stay_3");
    next_day.assert_said(&[SWEEPING]);
    assert_eq!(
        host.images_of(&later),
        Vec::<String>::new(),
        "{}",
        next_day.describe()
    );
    assert_eq!(
        host.images_of(&stay),
        stay_images,
        "{}",
        next_day.describe()
    );
    assert!(engine.image_exists(&foreign), "{}", next_day.describe());
}
