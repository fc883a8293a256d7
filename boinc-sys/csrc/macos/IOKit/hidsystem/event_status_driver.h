/* Build-only stand-in: the one type BOINC's lib/hostinfo.h takes from this
 * IOKit header, the handle of the HID event system, which is a Mach port.
 * The application API never calls IOKit: only the client's idle detection
 * uses the handle. */
#pragma once
#include <mach/port.h>

typedef mach_port_t NXEventHandle;
