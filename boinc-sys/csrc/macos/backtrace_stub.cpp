// The API prints a backtrace with lib/mac/mac_backtrace.cpp before it
// exits for an abort the client asked for; that code reads Mach-O images
// and needs Apple's SDK. The wrapper handles aborts itself (it removes its
// container first), so this build exits there without the backtrace.
#include <cstdio>

#include "mac_backtrace.h"

void PrintBacktrace(void) {}
