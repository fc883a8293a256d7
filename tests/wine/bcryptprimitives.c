/*
 * bcryptprimitives.dll for running docker_wrapper.exe under Wine 8.
 *
 * Rust's standard library (1.78 and later) takes its random numbers from
 * ProcessPrng in bcryptprimitives.dll, which Windows 10 and later have and
 * Wine 8 does not: without this DLL the program does not even load there.
 * tests/windows_exe.rs compiles it with MinGW and puts it into the test's
 * private Wine prefix (C:\windows\system32, where Windows keeps it). Real
 * Windows hosts never see it.
 */
#include <windows.h>
#include <ntsecapi.h>

/* Fills data with len random bytes; TRUE always, as Windows documents. */
BOOL WINAPI ProcessPrng(PBYTE data, SIZE_T len)
{
    while (len > 0) {
        ULONG chunk = len > 0x10000000 ? 0x10000000 : (ULONG)len;
        if (!RtlGenRandom(data, chunk))
            return FALSE;
        data += chunk;
        len -= chunk;
    }
    return TRUE;
}
