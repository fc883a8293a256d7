// The shim's C API (csrc/shim.h) and the two BOINC functions docker_wrapper
// calls directly, written by hand for Windows targets built without BOINC's
// headers. Keep in step with csrc/shim.h; on Linux bindgen generates these.

#[repr(C)]
#[derive(Debug, Copy, Clone)]
pub struct dw_status {
    pub no_heartbeat: ::std::os::raw::c_int,
    pub suspended: ::std::os::raw::c_int,
    pub quit_request: ::std::os::raw::c_int,
    pub abort_request: ::std::os::raw::c_int,
    pub network_suspended: ::std::os::raw::c_int,
    pub working_set_size: f64,
    pub max_working_set_size: f64,
}

unsafe extern "C" {
    pub fn boinc_finish(status: ::std::os::raw::c_int) -> ::std::os::raw::c_int;
    pub fn boinc_is_standalone() -> ::std::os::raw::c_int;
    pub fn dw_init_wrapper() -> ::std::os::raw::c_int;
    pub fn dw_get_status(status: *mut dw_status);
    pub fn dw_report_status(cpu_time: f64, checkpoint_cpu_time: f64, fraction_done: f64, wss: f64) -> ::std::os::raw::c_int;
    pub fn dw_temporary_exit(
        delay_seconds: ::std::os::raw::c_int,
        reason: *const ::std::os::raw::c_char,
        is_notice: ::std::os::raw::c_int,
    );
    pub fn dw_web_graphics_url(url: *const ::std::os::raw::c_char);
    pub fn dw_get_port(is_remote: ::std::os::raw::c_int, port: *mut ::std::os::raw::c_int) -> ::std::os::raw::c_int;
    pub fn dw_has_sporadic() -> ::std::os::raw::c_int;
    pub fn dw_sporadic_dir(dir: *const ::std::os::raw::c_char) -> ::std::os::raw::c_int;
    pub fn dw_exit(status: ::std::os::raw::c_int);
    pub fn dw_status_pending() -> ::std::os::raw::c_int;
    pub fn dw_send_trickle_up(
        variety: *const ::std::os::raw::c_char,
        text: *const ::std::os::raw::c_char,
    ) -> ::std::os::raw::c_int;
    pub fn dw_upload_file(name: *const ::std::os::raw::c_char) -> ::std::os::raw::c_int;
    pub fn dw_upload_status(name: *const ::std::os::raw::c_char) -> ::std::os::raw::c_int;
    pub fn dw_checkpoint_completed();
    pub fn dw_boinc_version() -> ::std::os::raw::c_int;
    pub fn dw_notify_status_changes(fd: ::std::os::raw::c_int);
    pub fn dw_timer_ticks() -> ::std::os::raw::c_ulong;
}
