// C entry points over the BOINC API's C++ functions. Differences between
// BOINC versions are decided at compile time from DW_BOINC_8 (set by build.rs
// when boinc_api.h declares the 8.x sporadic API).
#include <cstring>
#include <string>
#include <cstdio>
#include <cstdlib>
#ifndef _WIN32
#include <sys/time.h>
#include <unistd.h>
#endif
#include "boinc_api.h"
#include "error_numbers.h"
#include "network.h"
#include "version.h"
#include "shim.h"

int dw_init_wrapper(void) {
    BOINC_OPTIONS options;
    memset(&options, 0, sizeof(options));
    options.main_program = 1;
    options.check_heartbeat = 1;
    options.handle_process_control = 1;
    // direct_process_action = 0: a wrapper decides what to do with its
    // container; the API must not suspend or kill this process by itself.
    options.direct_process_action = 0;
    options.send_status_msgs = 0;
    int retval = boinc_init_options(&options);
#ifndef _WIN32
    // The API's 10 Hz SIGALRM interval timer only measures and suspends a
    // worker thread, which a wrapper does not have (direct_process_action
    // is off); each tick would wake the wrapper for nothing.
    struct itimerval off;
    memset(&off, 0, sizeof(off));
    setitimer(ITIMER_REAL, &off, NULL);
#endif
    return retval;
}

void dw_get_status(dw_status* out) {
    BOINC_STATUS s;
    memset(&s, 0, sizeof(s));
    boinc_get_status(&s);
    out->no_heartbeat = s.no_heartbeat;
    out->suspended = s.suspended;
    out->quit_request = s.quit_request;
    out->abort_request = s.abort_request;
    out->network_suspended = s.network_suspended;
    out->working_set_size = s.working_set_size;
    out->max_working_set_size = s.max_working_set_size;
}

int dw_report_status(double cpu_time, double checkpoint_cpu_time,
                     double fraction_done, double wss) {
#ifdef DW_BOINC_8
    return boinc_report_app_status_aux(cpu_time, checkpoint_cpu_time,
                                       fraction_done, 0, 0, 0, wss);
#else
    (void)wss;
    return boinc_report_app_status_aux(cpu_time, checkpoint_cpu_time,
                                       fraction_done, 0, 0, 0);
#endif
}

void dw_temporary_exit(int delay_seconds, const char* reason, int is_notice) {
    boinc_temporary_exit(delay_seconds, reason, is_notice != 0);
}

void dw_web_graphics_url(const char* url) {
    // The API takes char* but only reads it; copy so no const is cast away.
    char buf[256];
    strncpy(buf, url, sizeof(buf) - 1);
    buf[sizeof(buf) - 1] = 0;
    boinc_web_graphics_url(buf);
}

int dw_get_port(int is_remote, int* port) {
    int p = 0;
    int retval = boinc_get_port(is_remote != 0, p);
    *port = p;
    return retval;
}

int dw_has_sporadic(void) {
#ifdef DW_BOINC_8
    return 1;
#else
    return 0;
#endif
}

int dw_sporadic_dir(const char* dir) {
#ifdef DW_BOINC_8
    return boinc_sporadic_dir(dir);
#else
    (void)dir;
    return -1;
#endif
}

void dw_exit(int status) {
    boinc_disable_timer_thread = true;
    fflush(NULL);
#ifdef _WIN32
    exit(status);
#else
    // No atexit handlers while the timer thread may still be running.
    _exit(status);
#endif
}

int dw_status_pending(void) {
    if (!app_client_shm || !app_client_shm->shm) return 0;
    return app_client_shm->shm->app_status.has_msg() ? 1 : 0;
}

int dw_send_trickle_up(const char* variety, const char* text) {
    // The API takes char* but only reads them; copies keep const intact.
    std::string v(variety), t(text);
    return boinc_send_trickle_up(&v[0], &t[0]);
}

int dw_upload_file(const char* name) {
    std::string n(name);
    return boinc_upload_file(n);
}

int dw_upload_status(const char* name) {
    std::string n(name);
    int status = boinc_upload_status(n);
    // No answer from the client yet.
    return status == ERR_NOT_FOUND ? 1 : status;
}

void dw_checkpoint_completed(void) {
    boinc_checkpoint_completed();
}

int dw_boinc_version(void) {
    return BOINC_MAJOR_VERSION * 10000 + BOINC_MINOR_VERSION * 100 + BOINC_RELEASE;
}
