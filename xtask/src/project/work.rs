//! Work through BOINC's own tools: the classic app's work units with
//! `bin/create_work` (input files staged with `bin/stage_file`), BUDA jobs
//! with `bin/submit_buda`.
use super::apps::{self, OWN_APP_CMDLINE, OWN_APP_OUTPUTS};
use super::project::Project;
use anyhow::{bail, Context, Result};
use std::fs;
use std::path::Path;

/// What a work unit is for, so the end can check what became of it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Expect {
    /// Valid on the server.
    Valid,
    /// Valid, with this input file in the slot as a `<soft_link>` file.
    ValidWithLinkedInput(String),
    /// Valid, after being suspended and resumed on the client.
    ValidAfterSuspend,
    /// Valid, after the client was restarted while it ran.
    ValidAfterRestart,
    /// Exits with this code: a compute error on the server.
    ComputeError(i32),
}

pub struct Planned {
    pub wu_name: String,
    pub expect: Expect,
}

/// The sample job's work units (examples/hello: `main.sh STEPS [EXIT]`),
/// or the single one of an admin's own app.
pub fn create_classic(
    project: &Project,
    app: &str,
    own_app: Option<&Path>,
) -> Result<Vec<Planned>> {
    fs::create_dir_all(project.root.join("staging"))?;
    match own_app {
        Some(own) => Ok(vec![create_own(project, app, own)?]),
        None => create_samples(project, app),
    }
}

/// The admin's own app's work unit: the files in its `input/`, the outputs
/// its `outputs` names (default output.txt), its `cmdline`.
fn create_own(project: &Project, app: &str, own: &Path) -> Result<Planned> {
    let outputs =
        fs::read_to_string(own.join(OWN_APP_OUTPUTS)).unwrap_or_else(|_| "output.txt".into());
    let outputs: Vec<&str> = outputs.split_whitespace().collect();
    let cmdline = fs::read_to_string(own.join(OWN_APP_CMDLINE)).unwrap_or_default();
    let name = format!("{app}_sample");
    let staged = copy_own_inputs(project, own, &name)?;
    write_template(project, &format!("{app}_in"), input_template(&staged))?;
    write_template(project, &format!("{app}_out"), output_template(&outputs))?;
    project.own()?;
    stage(project, &staged)?;
    create_work(
        project,
        app,
        &name,
        &format!("{app}_in"),
        cmdline.trim(),
        &staged,
    )?;
    Ok(Planned {
        wu_name: name,
        expect: Expect::Valid,
    })
}

/// Copies the own app's inputs into the staging dir under names of the work
/// unit's own; returns them as (physical, logical) names.
fn copy_own_inputs(project: &Project, own: &Path, wu_name: &str) -> Result<Vec<(String, String)>> {
    let mut inputs = Vec::new();
    if let Ok(entries) = fs::read_dir(own.join("input")) {
        for entry in entries.flatten() {
            inputs.push(entry.file_name().to_string_lossy().into_owned());
        }
    }
    inputs.sort();
    let staging = project.root.join("staging");
    inputs
        .into_iter()
        .map(|logical| {
            let physical = format!("{wu_name}_{logical}");
            fs::copy(own.join("input").join(&logical), staging.join(&physical))?;
            Ok((physical, logical))
        })
        .collect()
}

/// One of the sample job's work units.
struct Sample {
    /// Its name after the app's.
    suffix: &'static str,
    /// `STEPS [EXIT]`
    cmdline: &'static str,
    /// Whether the input file goes with it.
    with_input: bool,
    expect: Expect,
}

/// The sample job's work units: one with an input file that reaches the slot
/// as a soft link, one that exits 3, one to be suspended and resumed.
fn create_samples(project: &Project, app: &str) -> Result<Vec<Planned>> {
    let input = (format!("{app}_input.txt"), "input.txt".to_string());
    fs::write(
        project.root.join("staging").join(&input.0),
        "an input file that arrives as a soft link\n",
    )?;
    write_template(project, &format!("{app}_in"), input_template(&[]))?;
    write_template(
        project,
        &format!("{app}_in_file"),
        input_template(std::slice::from_ref(&input)),
    )?;
    write_template(
        project,
        &format!("{app}_out"),
        output_template(&["output.txt"]),
    )?;
    project.own()?;
    stage(project, std::slice::from_ref(&input))?;
    let samples = [
        Sample {
            suffix: "input",
            cmdline: "6",
            with_input: true,
            expect: Expect::ValidWithLinkedInput(input.1.clone()),
        },
        Sample {
            suffix: "exit3",
            cmdline: "3 3",
            with_input: false,
            expect: Expect::ComputeError(3),
        },
        Sample {
            suffix: "suspend",
            cmdline: "30",
            with_input: false,
            expect: Expect::ValidAfterSuspend,
        },
    ];
    samples
        .into_iter()
        .map(|sample| create_sample(project, app, &input, sample))
        .collect()
}

fn create_sample(
    project: &Project,
    app: &str,
    input: &(String, String),
    sample: Sample,
) -> Result<Planned> {
    let name = format!("{app}_{}", sample.suffix);
    let (template, inputs) = if sample.with_input {
        ("_in_file", std::slice::from_ref(input))
    } else {
        ("_in", &[][..])
    };
    create_work(
        project,
        app,
        &name,
        &format!("{app}{template}"),
        sample.cmdline,
        inputs,
    )?;
    Ok(Planned {
        wu_name: name,
        expect: sample.expect,
    })
}

fn write_template(project: &Project, name: &str, xml: String) -> Result<()> {
    fs::write(project.root.join("templates").join(name), xml)?;
    Ok(())
}

/// A batch of BUDA jobs for the science app, each with its own input, as
/// `submit_buda` makes them (named by create_work); the first is the one
/// running while the client restarts.
pub fn submit_buda(project: &Project, jobs: usize, seconds: u32) -> Result<Vec<Expect>> {
    let staging = project.root.join("staging");
    fs::create_dir_all(&staging)?;
    let mut expects = Vec::new();
    for job in 0..jobs {
        let file = staging.join(format!("{}_in_{job}", apps::SCIENCE_APP));
        fs::write(&file, format!("input of BUDA job {job}\n"))?;
        project.own()?;
        let file = file.to_string_lossy().into_owned();
        let seconds = seconds.to_string();
        let out = project.tool(
            "bin/submit_buda",
            &[
                "--cmdline",
                &seconds,
                "--variant",
                apps::VARIANT,
                apps::SCIENCE_APP,
                &file,
            ],
        )?;
        if !out.contains("job created") {
            bail!("bin/submit_buda made no job:\n{out}");
        }
        expects.push(if job == 0 {
            Expect::ValidAfterRestart
        } else {
            Expect::Valid
        });
    }
    Ok(expects)
}

/// Puts input files where the download hierarchy wants them, as
/// `submit_buda` does (`bin/dir_hier_path`; 8.2.15's `bin/stage_file` calls
/// a PHP function its includes no longer define).
fn stage(project: &Project, files: &[(String, String)]) -> Result<()> {
    for (physical, _) in files {
        let target = project.tool("bin/dir_hier_path", &[physical])?;
        let target = target.trim();
        if !target.starts_with(&*project.root.join("download").to_string_lossy()) {
            bail!("bin/dir_hier_path {physical} answered {target:?}");
        }
        fs::copy(project.root.join("staging").join(physical), target)
            .with_context(|| format!("staging {physical} as {target}"))?;
    }
    project.own()
}

/// A work unit of `app` from the input template `wu_template`, with the
/// app's output template (`<app>_out`).
fn create_work(
    project: &Project,
    app: &str,
    name: &str,
    wu_template: &str,
    cmdline: &str,
    inputs: &[(String, String)],
) -> Result<()> {
    let wu_template = format!("templates/{wu_template}");
    let result_template = format!("templates/{app}_out");
    let mut args: Vec<&str> = vec![
        "--appname",
        app,
        "--wu_name",
        name,
        "--wu_template",
        &wu_template,
        "--result_template",
        &result_template,
    ];
    if !cmdline.is_empty() {
        args.extend(["--command_line", cmdline]);
    }
    args.extend(inputs.iter().map(|(physical, _)| physical.as_str()));
    project
        .tool("bin/create_work", &args)
        .with_context(|| format!("creating work unit {name}"))?;
    Ok(())
}

/// One result per work unit and no retry: what happens to it is what the
/// run reports. Inputs without `<copy_file/>` reach the slot as soft links.
fn input_template(inputs: &[(String, String)]) -> String {
    let mut xml = String::from("<input_template>\n");
    for (i, _) in inputs.iter().enumerate() {
        xml.push_str(&format!(
            "  <file_info>\n    <number>{i}</number>\n  </file_info>\n"
        ));
    }
    xml.push_str("  <workunit>\n");
    for (i, (_, logical)) in inputs.iter().enumerate() {
        xml.push_str(&format!(
            "    <file_ref>\n      <file_number>{i}</file_number>\n      <open_name>{logical}</open_name>\n    </file_ref>\n"
        ));
    }
    xml.push_str(
        "    <target_nresults>1</target_nresults>\n    <min_quorum>1</min_quorum>\n    \
         <max_error_results>1</max_error_results>\n    <max_total_results>1</max_total_results>\n    \
         <max_success_results>1</max_success_results>\n    <rsc_fpops_est>1e10</rsc_fpops_est>\n    \
         <rsc_fpops_bound>1e15</rsc_fpops_bound>\n    <rsc_memory_bound>500000000</rsc_memory_bound>\n    \
         <rsc_disk_bound>1000000000</rsc_disk_bound>\n    <delay_bound>86400</delay_bound>\n  </workunit>\n</input_template>\n",
    );
    xml
}

fn output_template(outputs: &[&str]) -> String {
    let mut xml = String::from("<output_template>\n");
    for i in 0..outputs.len() {
        xml.push_str(&format!(
            "  <file_info>\n    <name><OUTFILE_{i}/></name>\n    <generated_locally/>\n    <upload_when_present/>\n    \
             <max_nbytes>10000000</max_nbytes>\n    <url><UPLOAD_URL/></url>\n  </file_info>\n"
        ));
    }
    xml.push_str("  <result>\n");
    for (i, logical) in outputs.iter().enumerate() {
        xml.push_str(&format!(
            "    <file_ref>\n      <file_name><OUTFILE_{i}/></file_name>\n      <open_name>{logical}</open_name>\n    </file_ref>\n"
        ));
    }
    xml.push_str("  </result>\n</output_template>\n");
    xml
}
