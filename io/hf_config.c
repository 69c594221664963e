/* config.json files beside safetensors (io/hf_config.h). */
#include "io/hf_config.h"
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include "io/safetensors.h"

char *ds_hf_file_beside(const char *file, const char *name)
{
    char *d = ds_strdup(file);
    const char *dir = dirname(d); /* d itself, or "." for a name without a folder */
    size_t n = strlen(dir) + strlen(name) + 2;
    char *path = ds_malloc(n);
    snprintf(path, n, "%s/%s", dir, name);
    free(d);
    return path;
}

char *ds_hf_config_beside(const char *file) { return ds_hf_file_beside(file, "config.json"); }

int ds_hf_bytes_write(const char *path, const char *tmp, const char *data, size_t len)
{
    FILE *f = fopen(tmp, "wb");
    int rc = 0;
    if (!f || (len && fwrite(data, 1, len, f) != len)) rc = ds_err(DS_EXIT_OUTPUT, "%s: cannot write %s", path, tmp);
    if (f && fclose(f) != 0 && !rc) rc = ds_err(DS_EXIT_OUTPUT, "%s: cannot write %s", path, tmp);
    return rc;
}

int ds_hf_config_write(const char *path, const char *tmp, const ds_config *cfg, ds_dtype dt)
{
    char *text = ds_hf_config_json(cfg, dt);
    int rc = ds_hf_bytes_write(path, tmp, text, strlen(text));
    free(text);
    return rc;
}

/* ---- an export's staged set (io/hf_config.h) ---- */

#define STAGE_MARKER ".deltasoup-commit"

void ds_hf_test_fail_at(const char *point)
{
    const char *at = getenv("DS_TEST_FAIL_AT");
    if (at && strcmp(at, point) == 0) raise(SIGKILL);
}

char *ds_hf_stage_dir(const char *out)
{
    char *b = ds_strdup(out);
    size_t n = strlen(basename(b)) + 16;
    char *name = ds_malloc(n);
    snprintf(name, n, ".%s.export.tmp", basename(b));
    char *dir = ds_hf_file_beside(out, name);
    free(name);
    free(b);
    return dir;
}

char *ds_hf_stage_file(const char *out, const char *base)
{
    char *dir = ds_hf_stage_dir(out);
    size_t n = strlen(dir) + strlen(base) + 2;
    char *p = ds_malloc(n);
    snprintf(p, n, "%s/%s", dir, base);
    free(dir);
    return p;
}

/* fsync a file or folder by path; 0 or -1 (errno). */
static int sync_path(const char *path, int dir)
{
    int fd = open(path, dir ? O_RDONLY | O_DIRECTORY : O_RDONLY);
    if (fd < 0) return -1;
    int rc = fsync(fd);
    close(fd);
    return rc;
}

void ds_hf_stage_discard(const char *out)
{
    char *dir = ds_hf_stage_dir(out);
    DIR *d = opendir(dir);
    if (d) {
        struct dirent *e;
        while ((e = readdir(d))) {
            if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) continue;
            char *p = ds_hf_stage_file(out, e->d_name);
            unlink(p);
            free(p);
        }
        closedir(d);
    }
    rmdir(dir);
    free(dir);
}

int ds_hf_stage_create(const char *out)
{
    char *dir = ds_hf_stage_dir(out);
    int rc = 0;
    if (mkdir(dir, 0777) != 0) rc = ds_err(DS_EXIT_OUTPUT, "%s: cannot create %s: %s", out, dir, strerror(errno));
    free(dir);
    return rc;
}

/* Rename the staged files named by the marker's "file NAME" lines that are
 * still staged into place, in order; then the marker and the folder go. */
static int roll_forward(const char *out, FILE *m, const char *input_sha, int *same_input)
{
    char line[4096];
    int rc = 0, moved = 0;
    while (!rc && fgets(line, sizeof line, m)) {
        line[strcspn(line, "\n")] = 0;
        if (strncmp(line, "input_sha256 ", 13) == 0) {
            *same_input = input_sha && input_sha[0] && strcmp(line + 13, input_sha) == 0;
            continue;
        }
        if (strncmp(line, "file ", 5) != 0) continue;
        char *src = ds_hf_stage_file(out, line + 5), *dst = ds_hf_file_beside(out, line + 5);
        if (ds_file_exists(src)) {
            if (rename(src, dst) != 0)
                rc = ds_err(DS_EXIT_OUTPUT, "%s: cannot finish an interrupted export (%s): %s", out, dst, strerror(errno));
            else moved++;
        }
        free(src);
        free(dst);
    }
    if (!rc) {
        char *d = ds_hf_file_beside(out, ".");
        sync_path(d, 1);
        free(d);
        fprintf(stderr, "deltasoup export: note: finished an interrupted export of %s (%d staged files renamed into place)\n",
                out, moved);
    }
    return rc;
}

int ds_hf_stage_recover(const char *out, const char *input_sha, int *same_input)
{
    *same_input = 0;
    char *dir = ds_hf_stage_dir(out), *marker = ds_hf_stage_file(out, STAGE_MARKER);
    struct stat st;
    int rc = 0;
    if (stat(dir, &st) == 0) {
        FILE *m = fopen(marker, "r");
        if (m) {
            rc = roll_forward(out, m, input_sha, same_input);
            fclose(m);
        } else {
            fprintf(stderr, "deltasoup export: note: removed the staging folder %s of an interrupted export "
                            "(it had not committed: the files beside it are the previous ones)\n", dir);
        }
        if (!rc) ds_hf_stage_discard(out);
        if (!rc && stat(dir, &st) == 0) rc = ds_err(DS_EXIT_OUTPUT, "%s: cannot remove %s", out, dir);
    }
    free(dir);
    free(marker);
    return rc;
}

/* The marker, written to a temporary and renamed, then synced with its folder. */
static int write_marker(const char *out, const char *const *names, int n, const char *input_sha)
{
    char *marker = ds_hf_stage_file(out, STAGE_MARKER), *tmp = ds_hf_stage_file(out, STAGE_MARKER ".tmp");
    char *dir = ds_hf_stage_dir(out);
    FILE *f = fopen(tmp, "w");
    int rc = 0;
    if (f) {
        fprintf(f, "deltasoup-export 1\ninput_sha256 %s\n", input_sha && input_sha[0] ? input_sha : "-");
        for (int i = 0; i < n; i++) fprintf(f, "file %s\n", names[i]);
        if (fflush(f) != 0 || fsync(fileno(f)) != 0) rc = -1;
        if (fclose(f) != 0) rc = -1;
    }
    if (!f || rc || rename(tmp, marker) != 0 || sync_path(dir, 1) != 0)
        rc = ds_err(DS_EXIT_OUTPUT, "%s: cannot write %s: %s", out, marker, strerror(errno));
    free(marker);
    free(tmp);
    free(dir);
    return rc;
}

int ds_hf_stage_commit(const char *out, const char *const *names, int n, const char *input_sha)
{
    for (int i = 0; i < n; i++) {
        char *p = ds_hf_stage_file(out, names[i]);
        int bad = sync_path(p, 0);
        free(p);
        if (bad) return ds_err(DS_EXIT_OUTPUT, "%s: cannot sync staged %s: %s", out, names[i], strerror(errno));
    }
    ds_hf_test_fail_at("export:staged");
    int rc = write_marker(out, names, n, input_sha);
    if (rc) return rc;
    ds_hf_test_fail_at("export:marked");
    for (int i = 0; i < n && !rc; i++) {
        char *src = ds_hf_stage_file(out, names[i]), *dst = ds_hf_file_beside(out, names[i]), point[32];
        if (rename(src, dst) != 0)
            rc = ds_err(DS_EXIT_OUTPUT, "%s: cannot rename %s into place: %s", out, src, strerror(errno));
        free(src);
        free(dst);
        snprintf(point, sizeof point, "export:renamed:%d", i + 1);
        ds_hf_test_fail_at(point);
    }
    /* A failed rename leaves the marker: the next export finishes the set. */
    if (rc) return rc;
    char *d = ds_hf_file_beside(out, ".");
    sync_path(d, 1);
    free(d);
    ds_hf_stage_discard(out);
    return 0;
}
