#include "core/fileio.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

/* --- read-only mapping ------------------------------------------------------- */

lb_status lb_map_file(const char *path, lb_mapped_file *m) {
    static const uint8_t empty[1];
    memset(m, 0, sizeof *m);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return lb_error(LB_EIO, "cannot open '%s': %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0) {
        int err = errno;
        close(fd);
        return lb_error(LB_EIO, "cannot stat '%s': %s", path, strerror(err));
    }
    if (!S_ISREG(st.st_mode)) {
        close(fd);
        return lb_error(LB_EIO, "'%s' is not a regular file", path);
    }
    if (st.st_size == 0) {
        close(fd);
        m->data = empty;
        return LB_OK;
    }
    if ((uint64_t)st.st_size > SIZE_MAX) {
        close(fd);
        return lb_error(LB_EIO, "'%s' is too large to map (%lld bytes)", path, (long long)st.st_size);
    }
    void *p = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
    int err = errno;
    close(fd);
    if (p == MAP_FAILED) return lb_error(LB_EIO, "cannot map '%s': %s", path, strerror(err));
    m->base = p;
    m->data = p;
    m->size = (size_t)st.st_size;
    return LB_OK;
}

void lb_unmap_file(lb_mapped_file *m) {
    if (m->base) munmap(m->base, m->size);
    memset(m, 0, sizeof *m);
}

/* --- atomic writing ---------------------------------------------------------- */

static void free_names(lb_atomic_file *af) {
    free(af->path);
    free(af->tmp);
    af->path = af->tmp = NULL;
}

lb_status lb_atomic_begin(const char *path, lb_atomic_file *af) {
    memset(af, 0, sizeof *af);
    if (!path || !path[0]) return lb_error(LB_EINVAL, "empty output path");
    size_t len = strlen(path);
    af->path = strdup(path);
    af->tmp = malloc(len + 64);
    if (!af->path || !af->tmp) {
        free_names(af);
        return lb_error(LB_ENOMEM, "'%s': out of memory", path);
    }
    static unsigned counter;
    int fd = -1;
    for (int attempt = 0; attempt < 100 && fd < 0; attempt++) {
        snprintf(af->tmp, len + 64, "%s.tmp-%ld-%u", path, (long)getpid(), counter++);
        fd = open(af->tmp, O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC, 0666);
        if (fd < 0 && errno != EEXIST) break;
    }
    if (fd < 0) {
        lb_status s = lb_error(LB_EIO, "cannot create temporary file '%s': %s", af->tmp, strerror(errno));
        free_names(af);
        return s;
    }
    af->f = fdopen(fd, "wb");
    if (!af->f) {
        lb_status s = lb_error(LB_EIO, "cannot open '%s' for writing: %s", af->tmp, strerror(errno));
        close(fd);
        unlink(af->tmp);
        free_names(af);
        return s;
    }
    return LB_OK;
}

lb_status lb_atomic_write(lb_atomic_file *af, const void *p, size_t n) {
    if (af->failed) return lb_error(LB_EIO, "'%s': an earlier write failed", af->tmp);
    if (n && fwrite(p, 1, n, af->f) != n) {
        af->failed = 1;
        return lb_error(LB_EIO, "write to '%s' failed: %s", af->tmp, strerror(errno));
    }
    af->pos += n;
    return LB_OK;
}

lb_status lb_atomic_pad(lb_atomic_file *af, uint64_t alignment) {
    static const uint8_t zeros[256];
    uint64_t pad = (alignment - af->pos % alignment) % alignment;
    while (pad > 0) {
        size_t k = pad < sizeof zeros ? (size_t)pad : sizeof zeros;
        LB_TRY(lb_atomic_write(af, zeros, k));
        pad -= k;
    }
    return LB_OK;
}

lb_status lb_atomic_write_at(lb_atomic_file *af, uint64_t offset, const void *p, size_t n) {
    if (af->failed) return lb_error(LB_EIO, "'%s': an earlier write failed", af->tmp);
    if (fflush(af->f) != 0 || pwrite(fileno(af->f), p, n, (off_t)offset) != (ssize_t)n) {
        af->failed = 1;
        return lb_error(LB_EIO, "write to '%s' failed: %s", af->tmp, strerror(errno));
    }
    return LB_OK;
}

lb_status lb_atomic_write_produced(lb_atomic_file *af, const void *data, lb_produce_fn produce, void *ctx,
                                   size_t nbytes) {
    if (!produce) return lb_atomic_write(af, data, nbytes);
    void *buf = malloc(nbytes ? nbytes : 1);
    if (!buf) {
        af->failed = 1;
        return lb_error(LB_ENOMEM, "out of memory for %zu bytes", nbytes);
    }
    lb_status s = produce(ctx, buf, nbytes);
    if (s == LB_OK) s = lb_atomic_write(af, buf, nbytes);
    else af->failed = 1;
    free(buf);
    return s;
}

static lb_status fsync_dir_of(const char *path) {
    char dir[4096];
    const char *slash = strrchr(path, '/');
    if (!slash) snprintf(dir, sizeof dir, ".");
    else if (slash == path) snprintf(dir, sizeof dir, "/");
    else snprintf(dir, sizeof dir, "%.*s", (int)(slash - path), path);
    int fd = open(dir, O_RDONLY | O_CLOEXEC | O_DIRECTORY);
    if (fd < 0) return lb_error(LB_EIO, "cannot open directory '%s' to fsync: %s", dir, strerror(errno));
    int rc = fsync(fd), err = errno;
    close(fd);
    /* Some file systems cannot fsync a directory (EINVAL); nothing to do then. */
    if (rc != 0 && err != EINVAL) return lb_error(LB_EIO, "fsync of '%s' failed: %s", dir, strerror(err));
    return LB_OK;
}

lb_status lb_atomic_commit(lb_atomic_file *af) {
    if (af->failed) {
        lb_status s = lb_error(LB_EIO, "'%s' not written: an earlier write failed", af->path);
        lb_atomic_abort(af);
        return s;
    }
    lb_status s = LB_OK;
    if (fflush(af->f) != 0) s = lb_error(LB_EIO, "write to '%s' failed: %s", af->tmp, strerror(errno));
    if (s == LB_OK && fsync(fileno(af->f)) != 0)
        s = lb_error(LB_EIO, "fsync of '%s' failed: %s", af->tmp, strerror(errno));
    int rc = fclose(af->f);
    af->f = NULL;
    if (s == LB_OK && rc != 0) s = lb_error(LB_EIO, "close of '%s' failed: %s", af->tmp, strerror(errno));
    if (s == LB_OK && rename(af->tmp, af->path) != 0)
        s = lb_error(LB_EIO, "cannot rename '%s' onto '%s': %s", af->tmp, af->path, strerror(errno));
    if (s != LB_OK) {
        lb_atomic_abort(af);
        return s;
    }
    s = fsync_dir_of(af->path);
    free_names(af);
    return s;
}

void lb_atomic_abort(lb_atomic_file *af) {
    if (af->f) fclose(af->f);
    af->f = NULL;
    if (af->tmp) unlink(af->tmp);
    free_names(af);
}
