/* Build-only stand-in: BOINC's lib/network.cpp includes <resolv.h> on every
 * Unix but calls its only function (res_init) on none of macOS; zig's macOS
 * headers do not carry it. */
#pragma once
