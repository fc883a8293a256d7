/* extern "C" entry points for the BOINC API functions that are C++-only
 * or whose signature changed between BOINC 7.20 and 8.x. */
#ifndef DW_SHIM_H
#define DW_SHIM_H

#ifdef __cplusplus
extern "C" {
#endif

/* Client status, independent of the BOINC_STATUS layout of the linked version. */
typedef struct dw_status {
    int no_heartbeat;
    int suspended;
    int quit_request;
    int abort_request;
    int network_suspended;
    double working_set_size;
    double max_working_set_size;
} dw_status;

/* Initialise as the main program of a wrapper: the API only records client
 * requests in its status, it never suspends or exits the process itself. */
int dw_init_wrapper(void);

void dw_get_status(dw_status* status);

/* app_status with the working-set size where the library can carry it
 * (8.x); 7.20 libraries have no wss argument and drop it. */
int dw_report_status(double cpu_time, double checkpoint_cpu_time,
                     double fraction_done, double wss);

/* Never returns. */
void dw_temporary_exit(int delay_seconds, const char* reason, int is_notice);

void dw_web_graphics_url(const char* url);

/* A free TCP port on this host (loopback unless is_remote). 0 or a BOINC error. */
int dw_get_port(int is_remote, int* port);

/* 1 when the linked library supports sporadic apps (BOINC 8.x). */
int dw_has_sporadic(void);

/* Create the sporadic-app files in dir. -1 when unsupported. */
int dw_sporadic_dir(const char* dir);

/* Stops the API's timer thread, flushes stdio and ends the process at once
 * (as boinc_exit does after boinc_finish). Never returns. */
void dw_exit(int status);

/* 1 while the last app_status message has not been read by the client. */
int dw_status_pending(void);

/* Sends `text` to the project as a trickle-up message of `variety`. 0 or a
 * BOINC error. */
int dw_send_trickle_up(const char* variety, const char* text);

/* Asks the client to upload output file `name` (logical name) now. 0 or a
 * BOINC error. */
int dw_upload_file(const char* name);

/* How the upload of `name` went: 0 done, a BOINC error, or 1 while the
 * client has not said yet. */
int dw_upload_status(const char* name);

/* Tells the library that the job checkpointed. */
void dw_checkpoint_completed(void);

/* After each tick of the API's timer thread (10 Hz) that changed the
 * client's status (suspend, quit, abort, heartbeat, network), one byte is
 * written to `fd` (a non-blocking pipe). -1 stops it. */
void dw_notify_status_changes(int fd);

/* The timer thread's ticks seen by the hook so far: stays 0 in a build whose
 * library cannot be hooked (then nothing is written to the fd either). */
unsigned long dw_timer_ticks(void);

/* Version of the BOINC headers this shim was compiled against, e.g. 72005. */
int dw_boinc_version(void);

#ifdef __cplusplus
}
#endif
#endif
