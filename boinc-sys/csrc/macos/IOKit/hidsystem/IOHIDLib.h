/* Build-only stand-in: BOINC's lib/hostinfo.h includes this IOKit header on
 * macOS for the idle-detection declarations it needs from
 * event_status_driver.h; the application API uses nothing from it. */
#pragma once
#include "event_status_driver.h"
