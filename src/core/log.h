/* Leveled logging to stderr. The training progress display writes to stdout
 * itself; this is for warnings and diagnostics. */
#ifndef LOWBIT_CORE_LOG_H
#define LOWBIT_CORE_LOG_H

#include "core/error.h"

typedef enum lb_log_level { LB_LOG_DEBUG, LB_LOG_INFO, LB_LOG_WARN, LB_LOG_ERROR, LB_LOG_QUIET } lb_log_level;

void lb_log_set_level(lb_log_level level);
lb_log_level lb_log_get_level(void);
void lb_log(lb_log_level level, const char *fmt, ...) LB_PRINTF(2, 3);

#define lb_debug(...) lb_log(LB_LOG_DEBUG, __VA_ARGS__)
#define lb_info(...) lb_log(LB_LOG_INFO, __VA_ARGS__)
#define lb_warn(...) lb_log(LB_LOG_WARN, __VA_ARGS__)

#endif
