#include "core/error.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static _Thread_local char g_msg[LB_ERRMSG_MAX];
static _Thread_local lb_status g_code = LB_OK;

lb_status lb_error(lb_status code, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(g_msg, sizeof g_msg, fmt, ap);
    va_end(ap);
    g_code = code;
    return code;
}

void lb_error_prefix(const char *fmt, ...) {
    char prefix[LB_ERRMSG_MAX];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(prefix, sizeof prefix, fmt, ap);
    va_end(ap);
    if (n < 0) return;
    /* Assemble in a buffer twice the size; the message is cut to fit. */
    char joined[2 * LB_ERRMSG_MAX + 2];
    snprintf(joined, sizeof joined, "%s: %s", prefix, g_msg);
    memcpy(g_msg, joined, LB_ERRMSG_MAX - 1);
    g_msg[LB_ERRMSG_MAX - 1] = '\0';
}

const char *lb_errmsg(void) { return g_msg; }
lb_status lb_errcode(void) { return g_code; }

void lb_error_clear(void) {
    g_msg[0] = '\0';
    g_code = LB_OK;
}

const char *lb_status_name(lb_status code) {
    switch (code) {
    case LB_OK: return "ok";
    case LB_EINVAL: return "invalid argument";
    case LB_ENOMEM: return "out of memory";
    case LB_EIO: return "i/o error";
    case LB_EFORMAT: return "bad file format";
    case LB_ECONFIG: return "configuration error";
    case LB_ENUMERIC: return "non-finite numbers";
    case LB_EINTERRUPTED: return "interrupted";
    }
    return "unknown error";
}
