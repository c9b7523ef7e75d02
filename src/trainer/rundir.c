/* Run directories (see rundir.h): making and checking them, naming step
 * files, finding the newest, pruning the oldest. */
#define _GNU_SOURCE /* fallocate: lb_rundir_reserve */
#include "trainer/rundir.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* ---- making and checking ------------------------------------------------------ */

static lb_status copy_path(const char *path, char *buf, size_t size) {
    size_t n = strlen(path);
    if (n == 0) return lb_error(LB_EINVAL, "empty path");
    if (n >= size) return lb_error(LB_EIO, "'%.80s...': %s", path, strerror(ENAMETOOLONG));
    memcpy(buf, path, n + 1);
    return LB_OK;
}

/* mkdir -p, saying which component is in the way when one is not a directory. */
static lb_status make_dirs(const char *dir) {
    char buf[PATH_MAX];
    LB_TRY(copy_path(dir, buf, sizeof buf));
    for (char *p = buf + 1;; p++) {
        if (*p != '/' && *p != '\0') continue;
        char saved = *p;
        *p = '\0';
        if (mkdir(buf, 0777) != 0) {
            struct stat st;
            if (errno != EEXIST) return lb_error(LB_EIO, "cannot create directory '%s': %s", buf, strerror(errno));
            if (stat(buf, &st) != 0) return lb_error(LB_EIO, "cannot use '%s': %s", buf, strerror(errno));
            if (!S_ISDIR(st.st_mode)) return lb_error(LB_EIO, "'%s' is a file, not a directory", buf);
        }
        if (saved == '\0') break;
        *p = saved;
    }
    return LB_OK;
}

lb_status lb_rundir_prepare(const char *dir) {
    LB_TRY(make_dirs(dir));
    /* A probe named like the temporary file a checkpoint is written to, so
     * that the name is as long as the real ones and, should it be left behind,
     * latest and prune ignore it. */
    char probe[PATH_MAX];
    int n = snprintf(probe, sizeof probe, "%s/step_00000000.h5.tmp-probe-%ld", dir, (long)getpid());
    if (n < 0 || (size_t)n >= sizeof probe)
        return lb_error(LB_EIO, "'%.80s...': %s", dir, strerror(ENAMETOOLONG));
    int fd = open(probe, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
    if (fd < 0 && errno == EEXIST && unlink(probe) == 0) /* left by an earlier process of this pid */
        fd = open(probe, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
    if (fd < 0) return lb_error(LB_EIO, "cannot create a file in '%s': %s", dir, strerror(errno));
    close(fd);
    if (unlink(probe) != 0) return lb_error(LB_EIO, "cannot remove a file from '%s': %s", dir, strerror(errno));
    return LB_OK;
}

lb_status lb_rundir_reserve(const char *dir, uint64_t bytes) {
    char probe[PATH_MAX];
    int n = snprintf(probe, sizeof probe, "%s/step_00000000.h5.tmp-space-%ld", dir, (long)getpid());
    if (n < 0 || (size_t)n >= sizeof probe) return lb_error(LB_EIO, "'%.80s...': %s", dir, strerror(ENAMETOOLONG));
    int fd = open(probe, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0666);
    if (fd < 0) return lb_error(LB_EIO, "cannot create a file in '%s': %s", dir, strerror(errno));
    int err = fallocate(fd, 0, 0, (off_t)bytes) == 0 ? 0 : errno;
    close(fd);
    unlink(probe);
    if (err == 0 || err == EOPNOTSUPP || err == ENOSYS || err == EINVAL) return LB_OK; /* no answer: the write will tell */
    return lb_error(LB_EIO, "no room for a checkpoint of about %llu bytes (%.1f MiB) in '%s': %s",
                    (unsigned long long)bytes, bytes / 1048576.0, dir, strerror(err));
}

lb_status lb_rundir_check_file(const char *path) {
    char dir[PATH_MAX];
    LB_TRY(copy_path(path, dir, sizeof dir));
    char *slash = strrchr(dir, '/');
    if (slash && slash != dir) {
        *slash = '\0';
        LB_TRY(make_dirs(dir));
    }
    struct stat st;
    if (stat(path, &st) == 0) {
        if (S_ISDIR(st.st_mode)) return lb_error(LB_EIO, "'%s' is a directory", path);
        int fd = open(path, O_WRONLY | O_APPEND | O_CLOEXEC);
        if (fd < 0) return lb_error(LB_EIO, "cannot write '%s': %s", path, strerror(errno));
        close(fd);
        return LB_OK;
    }
    if (errno != ENOENT) return lb_error(LB_EIO, "cannot use '%s': %s", path, strerror(errno));
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
    if (fd < 0) return lb_error(LB_EIO, "cannot create '%s': %s", path, strerror(errno));
    close(fd);
    if (unlink(path) != 0) return lb_error(LB_EIO, "cannot remove '%s': %s", path, strerror(errno));
    return LB_OK;
}

/* ---- step files ------------------------------------------------------------------ */

lb_status lb_rundir_step_path(const char *dir, int64_t step, char *buf, size_t size) {
    if (step < 0) return lb_error(LB_EINVAL, "checkpoint step %lld is negative", (long long)step);
    int n = snprintf(buf, size, "%s/step_%08lld.h5", dir, (long long)step);
    if (n < 0 || (size_t)n >= size)
        return lb_error(LB_EINVAL, "checkpoint path for step %lld in '%s' does not fit in %zu bytes", (long long)step,
                        dir, size);
    return LB_OK;
}

/* The step of a file named exactly "step_<digits>.h5"; -1 for other names
 * (the temporary "step_*.h5.tmp-*" files among them). */
static int64_t step_of(const char *name) {
    if (strncmp(name, "step_", 5) != 0) return -1;
    const char *p = name + 5;
    int64_t step = 0;
    int digits = 0;
    for (; *p >= '0' && *p <= '9'; p++, digits++) {
        if (digits >= 18) return -1;
        step = step * 10 + (*p - '0');
    }
    if (digits == 0 || strcmp(p, ".h5") != 0) return -1;
    return step;
}

typedef struct step_file {
    int64_t step;
    char name[256];
} step_file;

/* All step files of `dir`, newest first, into a malloc'd array. */
static lb_status list_steps(const char *dir, step_file **out, size_t *count) {
    *out = NULL;
    *count = 0;
    DIR *d = opendir(dir);
    if (!d) return lb_error(LB_EIO, "checkpoint directory '%s': %s", dir, strerror(errno));
    step_file *files = NULL;
    size_t n = 0, cap = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        int64_t step = step_of(e->d_name);
        if (step < 0 || strlen(e->d_name) >= sizeof files->name) continue;
        if (n == cap) {
            cap = cap ? 2 * cap : 16;
            step_file *grown = realloc(files, cap * sizeof *files);
            if (!grown) {
                free(files);
                closedir(d);
                return lb_error(LB_ENOMEM, "checkpoint directory '%s': out of memory", dir);
            }
            files = grown;
        }
        files[n].step = step;
        snprintf(files[n].name, sizeof files[n].name, "%s", e->d_name);
        n++;
    }
    closedir(d);
    /* Newest first: a plain insertion sort, directories hold few checkpoints. */
    for (size_t i = 1; i < n; i++) {
        step_file f = files[i];
        size_t j = i;
        for (; j > 0 && files[j - 1].step < f.step; j--) files[j] = files[j - 1];
        files[j] = f;
    }
    *out = files;
    *count = n;
    return LB_OK;
}

lb_status lb_rundir_latest(const char *dir, char *buf, size_t size) {
    step_file *files;
    size_t n;
    LB_TRY(list_steps(dir, &files, &n));
    lb_status s = LB_OK;
    if (n == 0) {
        s = lb_error(LB_EINVAL, "checkpoint directory '%s' holds no checkpoint (step_*.h5)", dir);
    } else {
        int len = snprintf(buf, size, "%s/%s", dir, files[0].name);
        if (len < 0 || (size_t)len >= size)
            s = lb_error(LB_EINVAL, "checkpoint path '%s/%s' does not fit in %zu bytes", dir, files[0].name, size);
    }
    free(files);
    return s;
}

/* The process id in the name of a temporary step file ("step_<n>.h5.tmp-<pid>-<k>",
 * "...h5.tmp-probe-<pid>", "...h5.tmp-space-<pid>"), or 0 for other names. */
static long temp_owner(const char *name) {
    const char *t = strstr(name, ".h5.tmp-");
    if (strncmp(name, "step_", 5) != 0 || !t) return 0;
    t += strlen(".h5.tmp-");
    if (!strncmp(t, "probe-", 6) || !strncmp(t, "space-", 6)) t += 6;
    char *end;
    long pid = strtol(t, &end, 10);
    return end != t && (*end == '-' || *end == '\0') && pid > 0 ? pid : 0;
}

/* A save killed before its rename leaves its temporary file: as large as a
 * checkpoint, and nothing ever reads it. Those of processes that no longer
 * run on this machine go. */
static void remove_dead_temps(const char *dir) {
    DIR *d = opendir(dir);
    if (!d) return;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        long pid = temp_owner(e->d_name);
        if (pid <= 0 || pid == (long)getpid() || kill((pid_t)pid, 0) == 0 || errno != ESRCH) continue;
        char path[PATH_MAX];
        if (snprintf(path, sizeof path, "%s/%s", dir, e->d_name) < (int)sizeof path) unlink(path);
    }
    closedir(d);
}

lb_status lb_rundir_prune(const char *dir, int keep_last) {
    remove_dead_temps(dir);
    if (keep_last <= 0) return LB_OK; /* 0 means keep them all (checkpoint.keep_last) */
    step_file *files;
    size_t n;
    LB_TRY(list_steps(dir, &files, &n));
    lb_status s = LB_OK;
    for (size_t i = (size_t)keep_last; i < n; i++) {
        char path[PATH_MAX];
        snprintf(path, sizeof path, "%s/%s", dir, files[i].name);
        if (unlink(path) != 0 && errno != ENOENT && s == LB_OK)
            s = lb_error(LB_EIO, "cannot remove old checkpoint '%s': %s", path, strerror(errno));
    }
    free(files);
    return s;
}

lb_status lb_rundir_resolve(const char *path, char *buf, size_t size) {
    struct stat st;
    if (stat(path, &st) != 0) return lb_error(LB_EIO, "cannot open '%s': %s", path, strerror(errno));
    if (S_ISDIR(st.st_mode)) return lb_rundir_latest(path, buf, size);
    int n = snprintf(buf, size, "%s", path);
    if (n < 0 || (size_t)n >= size) return lb_error(LB_EINVAL, "checkpoint path '%s' does not fit in %zu bytes", path, size);
    return LB_OK;
}
