/* The dynamic loss scale (see loss_scale.h). */
#include "optim/loss_scale.h"

#include <math.h>

void lb_loss_scaler_init(lb_loss_scaler *s, float initial, int dynamic) {
    s->scale = initial > 0.0f ? initial : 1.0f;
    s->growth = 2.0f;
    s->backoff = 0.5f;
    s->growth_interval = 2000;
    s->good_steps = 0;
    s->min_scale = fminf(1.0f, s->scale);
    s->max_scale = 16777216.0f;
    s->dynamic = dynamic;
}

int lb_loss_scaler_update(lb_loss_scaler *s, int grads_finite) {
    if (!grads_finite) {
        if (s->dynamic) s->scale = fmaxf(s->scale * s->backoff, s->min_scale);
        s->good_steps = 0;
        return 1;
    }
    if (s->dynamic && ++s->good_steps >= s->growth_interval) {
        s->scale = fminf(s->scale * s->growth, s->max_scale);
        s->good_steps = 0;
    }
    return 0;
}
