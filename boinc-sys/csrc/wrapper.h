/* The part of the BOINC application API that docker_wrapper binds to.
 * Parsed as C: boinc_api.h keeps its C++-only declarations behind
 * __cplusplus, and those are reached through shim.h instead. */
#include "boinc_api.h"
#include "shim.h"
