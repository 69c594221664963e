/* Which kind of file a path holds (io/detect.h). */
#include "config.h"
#include "io/detect.h"
#include <fcntl.h>
#include <stdint.h>
#include <string.h>
#include <unistd.h>
#include "io/h5.h"
#include "io/safetensors.h"

int ds_st_is_safetensors(const char *path)
{
    size_t n = strlen(path);
    /* By name too: a damaged .safetensors file gets this branch's precise error. */
    if (n > 12 && strcmp(path + n - 12, ".safetensors") == 0) return 1;
    unsigned char b[9];
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return 0;
    off_t size = lseek(fd, 0, SEEK_END);
    int ok = size >= 10 && pread(fd, b, 9, 0) == 9;
    close(fd);
    if (!ok) return 0;
    uint64_t hl = 0;
    for (int i = 7; i >= 0; i--) hl = (hl << 8) | b[i];
    return hl <= DS_ST_MAX_HEADER && hl + 8 <= (uint64_t)size && b[8] == '{';
}

int ds_file_unknown_kind(const char *path, const char *kinds)
{
    hid_t file;
    int rc = ds_h5_open_serial(path, &file);
    if (rc) {
        /* Not HDF5 (or damaged): ds_h5_open_serial said why. */
        if (ds_h5_is_hdf5(path) || !ds_file_exists(path)) return rc;
        return ds_err(DS_EXIT_INPUT, "%s: not a file deltasoup reads (inspect knows: %s)", path, kinds);
    }
    char fmt[128] = "";
    if (!ds_h5_attr_exists(file, "format"))
        rc = ds_err(DS_EXIT_INPUT, "%s: HDF5 file without a format attribute: not a deltasoup file", path);
    else if (ds_h5_attr_get_str(file, "format", fmt, sizeof fmt) == 0)
        rc = ds_err(DS_EXIT_INPUT, "%s: unknown format \"%s\" (inspect knows: %s)", path, fmt, kinds);
    else
        rc = ds_errcode();
    H5Fclose(file);
    return rc;
}
