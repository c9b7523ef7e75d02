#include "core/log.h"

#include <stdarg.h>
#include <stdio.h>

static lb_log_level g_level = LB_LOG_INFO;

void lb_log_set_level(lb_log_level level) { g_level = level; }
lb_log_level lb_log_get_level(void) { return g_level; }

void lb_log(lb_log_level level, const char *fmt, ...) {
    static const char *const tag[] = {"debug", "info", "warning", "error"};
    _Static_assert(sizeof tag / sizeof tag[0] == LB_LOG_QUIET, "core/log.c: one tag per level below quiet");
    if (level < g_level || level >= LB_LOG_QUIET) return;
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "lowbit: %s: ", tag[level]);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}
