/* Shared by the libFuzzer targets whose reader takes a file name: the input
 * is written to a file in /dev/shm (a tmpfs; $FUZZ_TMPDIR overrides, else
 * /tmp when /dev/shm is absent) and the real reader opens it. One file per
 * process and suffix, rewritten for each input and removed at exit. */
#ifndef DS_TESTS_FUZZ_FILE_H
#define DS_TESTS_FUZZ_FILE_H
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static char fuzz_paths[8][512];

static void fuzz_file_cleanup(void)
{
    for (int i = 0; i < 8; i++)
        if (fuzz_paths[i][0]) unlink(fuzz_paths[i]);
}

/* The path of a file holding data[0..size) named ...SUFFIX (slot 0..7). */
static const char *fuzz_file(int slot, const uint8_t *data, size_t size, const char *suffix)
{
    if (!fuzz_paths[slot][0]) {
        const char *dir = getenv("FUZZ_TMPDIR");
        struct stat st;
        if (!dir || !*dir) dir = stat("/dev/shm", &st) == 0 && S_ISDIR(st.st_mode) ? "/dev/shm" : "/tmp";
        snprintf(fuzz_paths[slot], sizeof fuzz_paths[slot], "%s/ds-fuzz-%ld-%d%s", dir, (long)getpid(), slot,
                 suffix);
        atexit(fuzz_file_cleanup);
    }
    FILE *f = fopen(fuzz_paths[slot], "wb");
    if (!f || (size && fwrite(data, 1, size, f) != size) || fclose(f) != 0) {
        perror(fuzz_paths[slot]);
        abort();
    }
    return fuzz_paths[slot];
}
#endif
