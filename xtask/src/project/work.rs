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
    let templates = project.root.join("templates");
    let staging = project.root.join("staging");
    fs::create_dir_all(&staging)?;
    if let Some(own) = own_app {
        let outputs =
            fs::read_to_string(own.join(OWN_APP_OUTPUTS)).unwrap_or_else(|_| "output.txt".into());
        let outputs: Vec<&str> = outputs.split_whitespace().collect();
        let cmdline = fs::read_to_string(own.join(OWN_APP_CMDLINE)).unwrap_or_default();
        let mut inputs = Vec::new();
        if let Ok(entries) = fs::read_dir(own.join("input")) {
            for entry in entries.flatten() {
                inputs.push(entry.file_name().to_string_lossy().into_owned());
            }
        }
        inputs.sort();
        let name = format!("{app}_sample");
        let staged: Vec<(String, String)> = inputs
            .iter()
            .map(|logical| {
                let physical = format!("{name}_{logical}");
                fs::copy(own.join("input").join(logical), staging.join(&physical))?;
                Ok((physical, logical.clone()))
            })
            .collect::<Result<_>>()?;
        fs::write(templates.join(format!("{app}_in")), input_template(&staged))?;
        fs::write(
            templates.join(format!("{app}_out")),
            output_template(&outputs),
        )?;
        project.own()?;
        stage(project, &staged)?;
        create_work(
            project,
            app,
            &name,
            &format!("{app}_in"),
            &format!("{app}_out"),
            cmdline.trim(),
            &staged,
        )?;
        return Ok(vec![Planned {
            wu_name: name,
            expect: Expect::Valid,
        }]);
    }
    let input = (format!("{app}_input.txt"), "input.txt".to_string());
    fs::write(
        staging.join(&input.0),
        "an input file that arrives as a soft link\n",
    )?;
    fs::write(templates.join(format!("{app}_in")), input_template(&[]))?;
    fs::write(
        templates.join(format!("{app}_in_file")),
        input_template(std::slice::from_ref(&input)),
    )?;
    fs::write(
        templates.join(format!("{app}_out")),
        output_template(&["output.txt"]),
    )?;
    project.own()?;
    stage(project, std::slice::from_ref(&input))?;
    let units = [
        (
            format!("{app}_input"),
            "_in_file",
            "6",
            Expect::ValidWithLinkedInput(input.1.clone()),
        ),
        (
            format!("{app}_exit3"),
            "_in",
            "3 3",
            Expect::ComputeError(3),
        ),
        (
            format!("{app}_suspend"),
            "_in",
            "30",
            Expect::ValidAfterSuspend,
        ),
    ];
    let mut planned = Vec::new();
    for (name, template, cmdline, expect) in units {
        let inputs = if template == "_in_file" {
            vec![input.clone()]
        } else {
            Vec::new()
        };
        create_work(
            project,
            app,
            &name,
            &format!("{app}{template}"),
            &format!("{app}_out"),
            cmdline,
            &inputs,
        )?;
        planned.push(Planned {
            wu_name: name,
            expect,
        });
    }
    Ok(planned)
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

fn create_work(
    project: &Project,
    app: &str,
    name: &str,
    wu_template: &str,
    result_template: &str,
    cmdline: &str,
    inputs: &[(String, String)],
) -> Result<()> {
    let wu_template = format!("templates/{wu_template}");
    let result_template = format!("templates/{result_template}");
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
