// C entry points over the BOINC API's C++ functions. Differences between
// BOINC versions are decided at compile time from DW_BOINC_8 (set by build.rs
// when boinc_api.h declares the 8.x sporadic API).
#include <atomic>
#include <cerrno>
#include <cstring>
#include <ctime>
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
#include "util.h"
#include "version.h"
#include "shim.h"

// Status changes. The API's timer thread reads the client's messages ten
// times a second and records them in boinc_status; nothing tells the main
// thread. The shim hooks the thread's sleep between two ticks: there, right
// after a tick, it writes one byte to the wrapper's wake-up pipe when the
// status differs from the last tick's. The wrapper then waits on that pipe
// instead of looking at the status ten times a second itself.
//
// How the hook is reached depends on how BOINC is linked (build.rs):
// compiled from source, the API's calls to boinc_sleep are renamed to
// dw_api_timer_sleep; with the shared libraries, this binary's boinc_sleep
// takes the place of libboinc's (the dynamic linker looks in the executable
// first). BOINC's Windows libraries sleep with Sleep(): no hook there.

static std::atomic<int> status_fd(-1);
static std::atomic<unsigned long> timer_ticks(0);
static std::atomic<int> last_status(-1);

static int status_bits(void) {
    return (boinc_status.suspended ? 1 : 0) | (boinc_status.quit_request ? 2 : 0) |
           (boinc_status.abort_request ? 4 : 0) | (boinc_status.no_heartbeat ? 8 : 0) |
           (boinc_status.network_suspended ? 16 : 0);
}

// Called before each of the timer thread's sleeps (and the API's other
// sleeps, where it does no harm). Signal-safe and non-blocking: an atomic
// exchange and at most one write to a non-blocking pipe.
static void on_timer_sleep(void) {
    timer_ticks.fetch_add(1, std::memory_order_relaxed);
    int fd = status_fd.load();
    if (fd < 0) return;
    int bits = status_bits();
    if (last_status.exchange(bits) == bits) return;
#ifndef _WIN32
    char byte = 1;
    // A full pipe already holds a wake-up the wrapper has not read.
    ssize_t written = write(fd, &byte, 1);
    (void)written;
#endif
}

#if defined(DW_TIMER_HOOK_RENAMED)
void dw_api_timer_sleep(double seconds) {
    on_timer_sleep();
    boinc_sleep(seconds);
}
#elif defined(DW_TIMER_HOOK_INTERPOSED)
// The whole of libboinc's boinc_sleep, which this one replaces: sleep the
// full time, signals or not.
void boinc_sleep(double seconds) {
    on_timer_sleep();
    if (!(seconds > 0)) return;
    struct timespec left;
    left.tv_sec = (time_t)seconds;
    left.tv_nsec = (long)((seconds - (double)left.tv_sec) * 1e9);
    while (nanosleep(&left, &left) != 0 && errno == EINTR) {
    }
}
#endif

void dw_notify_status_changes(int fd) {
    last_status.store(status_bits());
    status_fd.store(fd);
}

unsigned long dw_timer_ticks(void) {
    return timer_ticks.load(std::memory_order_relaxed);
}

// "API_VERSION_<version>", defined in boinc_api.cpp. A project's
// update_versions finds it with `strings` in the main program and records it
// as the app version's <api_version>; without it the client takes the app
// for a pre-6 one and talks to it through System V shared memory instead of
// the mmap file. Nothing else refers to it, so the linker would drop it.
extern const char* api_version;

int dw_init_wrapper(void) {
    // Keeps api_version (and so its text) in the linked binary.
    const char* volatile keep = api_version;
    (void)keep;
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
