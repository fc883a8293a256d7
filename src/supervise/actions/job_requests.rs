//! What the job asks of the client through its control files: trickle-up
//! messages and uploads of intermediate files.
use std::time::Instant;

use crate::slot::control_files;
use crate::supervise::machine::{Event, Periodic};
use crate::supervise::{Next, Supervision};

impl Supervision<'_> {
    /// The job's requests since the last look, for the machine.
    pub(super) fn check_control_files(&mut self) -> Next {
        self.schedule
            .set(Periodic::ControlFiles, Instant::now() + control_files::POLL);
        self.follow_uploads();
        let requests = match &mut self.control {
            Some(control) => control.look(Instant::now()),
            None => Vec::new(),
        };
        Next::Then(requests.into_iter().map(Event::Job).collect())
    }

    pub(super) fn send_trickle(&mut self, variety: &str, content: &str) -> Next {
        match self.task.client.send_trickle_up(variety, content) {
            Ok(()) => log::info!(
                "trickle-up message '{variety}' sent ({} bytes)",
                content.len()
            ),
            Err(code) => log::warn!("cannot send trickle-up message '{variety}' (error {code})"),
        }
        Next::Continue
    }

    pub(super) fn request_upload(&mut self, name: &str) -> Next {
        match self.task.client.upload_file(name) {
            Ok(()) => {
                log::info!("{name}: upload requested");
                self.pending_uploads.push(name.to_string());
            }
            Err(code) => log::warn!("{name}: cannot request its upload (error {code})"),
        }
        Next::Continue
    }

    /// Logs how the uploads asked for went, once each.
    fn follow_uploads(&mut self) {
        let client = self.task.client;
        self.pending_uploads
            .retain(|name| match client.upload_status(name) {
                None => true,
                Some(Ok(())) => {
                    log::info!("{name}: uploaded");
                    false
                }
                Some(Err(code)) => {
                    log::warn!("{name}: the upload failed (error {code})");
                    false
                }
            });
    }
}
