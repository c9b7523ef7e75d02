#include "trainer/memory.h"

#include <stdio.h>
#include <string.h>
#include <sys/resource.h>

void lb_memory_need_sum(lb_memory_need *n) {
    n->total = n->parameters + n->gradients + n->optimizer + n->activations + n->teacher + n->data + n->dist;
}

int lb_memory_size_str(size_t bytes, char *buf, size_t size) {
    double b = (double)bytes;
    if (b >= 1024.0 * 1024.0 * 1024.0) return snprintf(buf, size, "%.2f GiB", b / (1024.0 * 1024.0 * 1024.0));
    if (b >= 1024.0 * 1024.0) return snprintf(buf, size, "%.1f MiB", b / (1024.0 * 1024.0));
    return snprintf(buf, size, "%.1f KiB", b / 1024.0);
}

int lb_memory_format(const lb_memory_need *n, char *buf, size_t size) {
    const struct {
        const char *name;
        size_t bytes;
        int always;
    } parts[] = {{"parameters", n->parameters, 1}, {"gradients", n->gradients, 1}, {"optimizer", n->optimizer, 1},
                 {"activations", n->activations, 1}, {"teacher", n->teacher, 0},     {"data", n->data, 0},
                 {"data parallel", n->dist, 0}};
    char s[32];
    lb_memory_size_str(n->total, s, sizeof s);
    int len = snprintf(buf, size, "~%s:", s);
    int first = 1;
    for (size_t i = 0; i < sizeof parts / sizeof parts[0]; i++) {
        if (!parts[i].always && parts[i].bytes == 0) continue;
        lb_memory_size_str(parts[i].bytes, s, sizeof s);
        size_t at = (size_t)len < size ? (size_t)len : size;
        len += snprintf(buf + at, size - at, "%s %s %s", first ? "" : ",", parts[i].name, s);
        first = 0;
    }
    return len;
}

/* A "Key:   N kB" line of a /proc file, in bytes; 0 when absent. */
static size_t proc_kb(const char *path, const char *key) {
    FILE *f = fopen(path, "r");
    if (!f) return 0;
    char line[256];
    size_t klen = strlen(key), v = 0;
    while (fgets(line, sizeof line, f))
        if (strncmp(line, key, klen) == 0 && line[klen] == ':') {
            unsigned long long kb = 0;
            if (sscanf(line + klen + 1, "%llu", &kb) == 1) v = (size_t)kb * 1024;
            break;
        }
    fclose(f);
    return v;
}

/* Takes the rlimit `res` into *l when it leaves less than *l does. */
static void consider_rlimit(lb_memory_limit *l, int res, const char *what, const char *held_key) {
    struct rlimit r;
    if (getrlimit(res, &r) != 0 || r.rlim_cur == RLIM_INFINITY) return;
    size_t limit = (size_t)r.rlim_cur, held = proc_kb("/proc/self/status", held_key);
    size_t avail = held < limit ? limit - held : 0;
    if (!l->known || avail < l->available) *l = (lb_memory_limit){1, avail, limit, what};
}

lb_memory_limit lb_memory_limit_now(void) {
    lb_memory_limit l = {0, 0, 0, NULL};
    size_t avail = proc_kb("/proc/meminfo", "MemAvailable");
    if (avail) {
        avail += proc_kb("/proc/meminfo", "SwapFree");
        l = (lb_memory_limit){1, avail, avail, "MemAvailable + SwapFree"};
    }
    consider_rlimit(&l, RLIMIT_AS, "ulimit -v", "VmSize");
    consider_rlimit(&l, RLIMIT_DATA, "ulimit -d", "VmData");
    return l;
}

lb_status lb_memory_check(const char *what, const lb_memory_need *need) {
    lb_memory_limit l = lb_memory_limit_now();
    if (!l.known || need->total <= l.available) return LB_OK;
    char parts[256], limit[32], avail[32];
    lb_memory_format(need, parts, sizeof parts);
    lb_memory_size_str(l.limit, limit, sizeof limit);
    lb_memory_size_str(l.available, avail, sizeof avail);
    if (l.limit != l.available)
        return lb_error(LB_ENOMEM, "%s: needs about %s, but %s allows %s (%s of it still free)", what, parts + 1,
                        l.what, limit, avail);
    return lb_error(LB_ENOMEM, "%s: needs about %s, but %s is %s", what, parts + 1, l.what, limit);
}
