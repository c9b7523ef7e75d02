/* Status codes that carry a message with context.
 *
 * Library functions return an lb_status (or NULL for functions returning a
 * pointer) and record a human-readable message for the calling thread, in the
 * style of sqlite3_errmsg(). Callers add context on the way up with
 * lb_error_prefix(), so the message a user finally sees reads like
 *   "checkpoint 'run/step_100.h5': tensor 'blk.0.attn_q.weight': expected shape [256,256], found [128,256]".
 * Library code never aborts on bad input. */
#ifndef LOWBIT_CORE_ERROR_H
#define LOWBIT_CORE_ERROR_H

typedef enum lb_status {
    LB_OK = 0,
    LB_EINVAL,     /* bad argument, wrong shape, unknown name */
    LB_ENOMEM,     /* allocation failed */
    LB_EIO,        /* the file system refused (open, write, fsync, rename) */
    LB_EFORMAT,    /* a file is truncated, corrupt, foreign or of another version */
    LB_ECONFIG,    /* a configuration is malformed or inconsistent */
    LB_ENUMERIC,   /* NaN or infinity where finite numbers were required */
    LB_EINTERRUPTED /* stopped by a signal (SIGINT/SIGTERM) */
} lb_status;

#define LB_ERRMSG_MAX 1024

#if defined(__GNUC__)
#define LB_PRINTF(a, b) __attribute__((format(printf, a, b)))
#else
#define LB_PRINTF(a, b)
#endif

/* Records a message for this thread and returns `code`, so a failure reads
 *   return lb_error(LB_EINVAL, "tensor '%s': expected 2 dims, got %d", name, nd); */
lb_status lb_error(lb_status code, const char *fmt, ...) LB_PRINTF(2, 3);
/* Puts "context: " in front of the current message (for callers adding where). */
void lb_error_prefix(const char *fmt, ...) LB_PRINTF(1, 2);
/* The last message recorded on this thread ("" when none). */
const char *lb_errmsg(void);
/* The last code recorded on this thread (LB_OK when none). */
lb_status lb_errcode(void);
void lb_error_clear(void);
/* A short name for a code: "invalid argument", "i/o error", ... */
const char *lb_status_name(lb_status code);

/* Propagate a failure from a call that returns lb_status. */
#define LB_TRY(expr)                         \
    do {                                     \
        lb_status lb_try_s_ = (expr);        \
        if (lb_try_s_ != LB_OK) return lb_try_s_; \
    } while (0)

#endif
