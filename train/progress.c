#include <math.h>
#include <stdio.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"

static double cli_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

void cli_progress_init(cli_progress *p, long total_steps, long tokens_at_start) {
    p->tty = isatty(STDOUT_FILENO);
    p->total_steps = total_steps;
    p->t_start = cli_now();
    p->tokens_at_start = tokens_at_start;
}

static void format_duration(double s, char *buf, size_t size) {
    if (!isfinite(s) || s < 0) s = 0;
    long t = (long)(s + 0.5);
    if (t >= 3600)
        snprintf(buf, size, "%ldh%02ldm", t / 3600, (t % 3600) / 60);
    else
        snprintf(buf, size, "%ldm%02lds", t / 60, t % 60);
}

void cli_progress_step(cli_progress *p, long step, long tokens_seen, float loss, float lr, int interval) {
    int due = p->tty || step == p->total_steps || (interval > 0 && step % interval == 0);
    if (!due) return;
    double elapsed = cli_now() - p->t_start;
    double tok_s = elapsed > 0 ? (double)(tokens_seen - p->tokens_at_start) / elapsed : 0.0;
    /* ETA from the rate of this session's steps, so a resumed run is not skewed. */
    double per_token = tok_s > 0 ? 1.0 / tok_s : 0.0;
    double tokens_per_step = step > 0 ? (double)tokens_seen / (double)step : 0.0;
    double eta = per_token * tokens_per_step * (double)(p->total_steps - step);
    char eta_s[32];
    format_duration(eta, eta_s, sizeof eta_s);
    if (p->tty) {
        enum { WIDTH = 24 };
        int filled = p->total_steps > 0 ? (int)(WIDTH * step / p->total_steps) : WIDTH;
        char bar[WIDTH + 1];
        for (int i = 0; i < WIDTH; i++) bar[i] = i < filled ? '#' : '.';
        bar[WIDTH] = '\0';
        printf("\r[%s] step %ld/%ld  loss %.4f  lr %.2e  %.0f tok/s  ETA %s \033[K", bar, step, p->total_steps,
               loss, lr, tok_s, eta_s);
    } else {
        printf("step %ld/%ld  loss %.4f  lr %.2e  %.0f tok/s  ETA %s\n", step, p->total_steps, loss, lr, tok_s,
               eta_s);
    }
    fflush(stdout);
}

void cli_progress_break(cli_progress *p) {
    if (p->tty) {
        printf("\n");
        fflush(stdout);
    }
}
