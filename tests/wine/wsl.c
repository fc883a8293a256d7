/*
 * A stand-in for wsl.exe, so that docker_wrapper.exe's WSL transport can run
 * under Wine, with the Linux host playing the part of the WSL distro.
 *
 *     wsl -d <distro> [-u <user>] --exec <program> [args...]
 *
 * runs <program> (a Unix path) on the host with its stdin and stdout
 * connected to this process's stdin and stdout, as wsl.exe connects them to
 * the program inside the distro. -d and -u are checked for form and written,
 * with the rest of the command line, to the file named by DW_WSL_LOG (if
 * set); the program runs as the user running Wine.
 *
 * Why a Windows program and not a script named wsl.exe: Wine starts a Unix
 * executable from a Windows process (its ntdll falls back to fork and exec
 * for files that are not PE images), but
 *   - Wine's pipes exist only inside wineserver and have no Unix file
 *     descriptor (get_handle_fd answers BAD_DEVICE_TYPE), so the Unix
 *     program gets /dev/null as stdin and stdout instead of the caller's
 *     pipes; and with CREATE_NO_WINDOW, which docker_wrapper uses, Wine
 *     gives it /dev/null in any case;
 *   - the caller gets no process handle (NULL) for it, so it cannot wait
 *     for it or see it exit.
 * Winsock sockets, on the other hand, are Unix sockets in Wine. So this
 * program connects a loopback TCP socket pair, starts the Unix program with
 * one end as its stdin and stdout, and copies bytes between its own
 * stdin/stdout and the other end. It exits when the program has closed its
 * output (it exited), with status 0: Wine gives no way to learn the Unix
 * program's exit status. Killing this process closes the socket, and the
 * program reads end of input, as a distro's shell does when wsl.exe dies.
 *
 * The Unix program gets the socket in non-blocking mode (Wine keeps all
 * socket descriptors so); dash, Debian's /bin/sh, switches its stdin back
 * to blocking mode and says "sh: turning off NDELAY mode" on stderr.
 *
 * Build: x86_64-w64-mingw32-gcc -municode -o wsl.exe wsl.c -lws2_32
 */
#include <winsock2.h>
#include <windows.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <wchar.h>

static SOCKET ours = INVALID_SOCKET;

static int fail(const wchar_t *what, unsigned long code)
{
    fwprintf(stderr, L"wsl stand-in: %ls (error %lu)\n", what, code);
    return 1;
}

/* Copies this process's stdin into the socket; end of input ends the
 * program's input too. */
static DWORD WINAPI feed_input(void *unused)
{
    HANDLE in = GetStdHandle(STD_INPUT_HANDLE);
    char buf[16384];
    DWORD n;
    (void)unused;
    while (ReadFile(in, buf, sizeof buf, &n, NULL) && n > 0) {
        DWORD done = 0;
        while (done < n) {
            int sent = send(ours, buf + done, (int)(n - done), 0);
            if (sent <= 0)
                return 0;
            done += (DWORD)sent;
        }
    }
    shutdown(ours, SD_SEND);
    return 0;
}

/* Appends one argument to a command line, quoted as CommandLineToArgvW
 * (and Wine's own argv builder) read it back. */
static int append_quoted(wchar_t *line, size_t size, const wchar_t *arg)
{
    size_t at = wcslen(line);
    int quote = !*arg || wcspbrk(arg, L" \t\"") != NULL;
    size_t backslashes = 0;
#define PUT(c) do { if (at + 1 >= size) return 0; line[at++] = (c); } while (0)
    if (at > 0)
        PUT(L' ');
    if (quote)
        PUT(L'"');
    for (; *arg; arg++) {
        if (*arg == L'\\') {
            backslashes++;
        } else if (*arg == L'"') {
            while (backslashes--) PUT(L'\\');
            backslashes = 0;
            PUT(L'\\');
        } else {
            backslashes = 0;
        }
        PUT(*arg);
    }
    if (quote) {
        while (backslashes--) PUT(L'\\');
        PUT(L'"');
    }
#undef PUT
    line[at] = 0;
    return 1;
}

/* One line of UTF-8 with the arguments, separated by spaces. */
static void log_arguments(int argc, wchar_t **argv)
{
    const wchar_t *path = _wgetenv(L"DW_WSL_LOG");
    FILE *log;
    char text[4096];
    if (!path || !(log = _wfopen(path, L"ab")))
        return;
    for (int i = 1; i < argc; i++) {
        if (i > 1)
            fputc(' ', log);
        if (WideCharToMultiByte(CP_UTF8, 0, argv[i], -1, text, sizeof text, NULL, NULL))
            fputs(text, log);
    }
    fputc('\n', log);
    fclose(log);
}

int wmain(int argc, wchar_t **argv)
{
    int i = 1, program = 0;
    const wchar_t *distro = NULL;

    log_arguments(argc, argv);
    while (i < argc && !program) {
        if (!wcscmp(argv[i], L"-d") && i + 1 < argc) {
            distro = argv[i + 1];
            i += 2;
        } else if (!wcscmp(argv[i], L"-u") && i + 1 < argc) {
            i += 2;
        } else if (!wcscmp(argv[i], L"--exec") && i + 1 < argc) {
            program = i + 1;
        } else {
            fwprintf(stderr, L"wsl stand-in: unexpected argument %ls\n", argv[i]);
            return 1;
        }
    }
    if (!distro || !program) {
        fwprintf(stderr, L"wsl stand-in: usage: wsl -d DISTRO [-u USER] --exec PROGRAM [ARGS...]\n");
        return 1;
    }

    /* Wine's Windows name for the Unix path (Z:\bin\sh for /bin/sh). */
    typedef WCHAR *(CDECL *dos_file_name_fn)(const char *);
    dos_file_name_fn dos_file_name =
        (dos_file_name_fn)(void *)GetProcAddress(GetModuleHandleW(L"kernel32"), "wine_get_dos_file_name");
    if (!dos_file_name)
        return fail(L"this stand-in runs only under Wine", 0);
    char unix_path[4096];
    if (!WideCharToMultiByte(CP_UTF8, 0, argv[program], -1, unix_path, sizeof unix_path, NULL, NULL))
        return fail(L"program path too long", GetLastError());
    WCHAR *image = dos_file_name(unix_path);
    if (!image)
        return fail(L"no Windows name for the program", GetLastError());
    /* The command line becomes the Unix argv, argv[0] as given. */
    wchar_t command_line[32768] = L"";
    for (int a = program; a < argc; a++)
        if (!append_quoted(command_line, sizeof command_line / sizeof *command_line, argv[a]))
            return fail(L"command line too long", 0);

    WSADATA wsa;
    if (WSAStartup(MAKEWORD(2, 2), &wsa))
        return fail(L"WSAStartup", WSAGetLastError());
    SOCKET listener = socket(AF_INET, SOCK_STREAM, IPPROTO_TCP);
    struct sockaddr_in address = { 0 };
    int length = sizeof address;
    address.sin_family = AF_INET;
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (listener == INVALID_SOCKET || bind(listener, (struct sockaddr *)&address, sizeof address)
        || listen(listener, 1) || getsockname(listener, (struct sockaddr *)&address, &length))
        return fail(L"cannot listen on the loopback interface", WSAGetLastError());
    SOCKET theirs = socket(AF_INET, SOCK_STREAM, IPPROTO_TCP);
    if (theirs == INVALID_SOCKET || connect(theirs, (struct sockaddr *)&address, sizeof address))
        return fail(L"cannot connect on the loopback interface", WSAGetLastError());
    ours = accept(listener, NULL, NULL);
    if (ours == INVALID_SOCKET)
        return fail(L"accept", WSAGetLastError());
    closesocket(listener);

    /* DETACHED_PROCESS: with a new or hidden console, Wine would give the
     * Unix program /dev/null instead of the socket. */
    STARTUPINFOW startup;
    PROCESS_INFORMATION started;
    memset(&startup, 0, sizeof startup);
    startup.cb = sizeof startup;
    startup.dwFlags = STARTF_USESTDHANDLES;
    startup.hStdInput = (HANDLE)theirs;
    startup.hStdOutput = (HANDLE)theirs;
    startup.hStdError = GetStdHandle(STD_ERROR_HANDLE);
    if (!CreateProcessW(image, command_line, NULL, NULL, TRUE, DETACHED_PROCESS, NULL, NULL, &startup, &started))
        return fail(L"cannot start the program", GetLastError());
    /* The program has its own copy of the socket now. */
    closesocket(theirs);
    if (!CreateThread(NULL, 0, feed_input, NULL, 0, NULL))
        return fail(L"CreateThread", GetLastError());

    HANDLE out = GetStdHandle(STD_OUTPUT_HANDLE);
    char buf[16384];
    int n;
    while ((n = recv(ours, buf, sizeof buf, 0)) > 0) {
        DWORD done = 0, written;
        while (done < (DWORD)n) {
            if (!WriteFile(out, buf + done, (DWORD)n - done, &written, NULL))
                return 0; /* our reader is gone */
            done += written;
        }
    }
    return 0;
}
